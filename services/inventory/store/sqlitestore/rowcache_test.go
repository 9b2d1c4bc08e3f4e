package sqlitestore

import (
	"slices"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// A tag change or new connection-request credentials queued in the same
// batch as a diff of the device come before it: the diff must read the
// row they wrote, not the one the session cache holds from the device's
// last commit, and the state it leaves must keep what they wrote.
func TestRowCacheWithinBatch(t *testing.T) {
	VerifyRowCache(t)
	const tenant = "default"
	for _, tc := range []struct {
		name  string
		write func(s *Store, id string) error
		check func(st store.SessionState) bool
	}{
		{"tags", func(s *Store, id string) error { return s.AddTags(t.Context(), tenant, id, "added") },
			func(st store.SessionState) bool { return slices.Equal(st.Tags, []string{"added", "orig"}) }},
		{"credentials", func(s *Store, id string) error {
			return s.SetConnectionRequestCredentials(t.Context(), tenant, id, store.Credentials{Username: "op", Password: "secret"}, false)
		}, func(st store.SessionState) bool {
			return st.ConnectionRequestCredentials != nil && st.ConnectionRequestCredentials.Username == "op"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startStore(t)
			id := seed(t, s, tenant, "RC", 1)
			release := hold(t, s)
			written := make(chan error, 1)
			go func() { written <- tc.write(s, id) }()
			waitQueued(t, s, 1)
			diff := enqueue(t, s, t.Context(), 1, tenant, id, store.Diff{Time: batchBase.Add(time.Minute), SessionID: "s2",
				Params: []store.ParamUpdate{store.SetValue("Device.X", "next", "xsd:string")}}, 2)
			release()
			if err := <-written; err != nil {
				t.Fatalf("write: %v", err)
			}
			if r := <-diff; r.err != nil {
				t.Fatalf("diff: %v", r.err)
			}
			// The next diff reads the row from the cache and, verifying,
			// from the database too.
			if _, err := s.ApplySessionDiff(t.Context(), tenant, id, store.Diff{Time: batchBase.Add(2 * time.Minute), SessionID: "s3",
				Params: []store.ParamUpdate{store.SetValue("Device.X", "last", "xsd:string")}}, 3); err != nil {
				t.Fatalf("diff after the batch: %v", err)
			}
			st, err := s.SessionState(t.Context(), tenant, id)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(st) || st.FencingToken != 3 {
				t.Fatalf("session state after the batch: %+v", st)
			}
			if got := mustGet(t, s, tenant, id).Params["Device.X"].Value; got != "last" {
				t.Fatalf("Device.X = %q", got)
			}
		})
	}
}
