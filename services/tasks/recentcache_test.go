package tasks

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
)

// TestClaimUsesRecentRecord: a claim of a task this replica queued reads
// nothing from the store.
func TestClaimUsesRecentRecord(t *testing.T) {
	st := &readCounter{Store: sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "tasks.db")})}
	h := newHarness(t, harnessOpts{st: st})
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	ids := h.queueIDs(t, "default", dev1)
	before := st.reads.Load()
	if c := h.claim(t, "s1", ids...); len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("claim %v", c)
	}
	if n := st.reads.Load() - before; n != 0 {
		t.Errorf("the claim read the store %d times", n)
	}
	if got := h.get(t, task.GetId()); got.GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED {
		t.Errorf("state %v", got.GetState())
	}
}

// staleRecord returns the stored record of id, its body changed by edit
// (nil: as stored).
func staleRecord(t *testing.T, h *harness, id string, edit func(*tasksv1.Task)) store.Record {
	t.Helper()
	r, err := h.st.Get(t.Context(), "default", id)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		task, err := decodeTask(r)
		if err != nil {
			t.Fatal(err)
		}
		edit(task)
		r.Body = encodeTask(task)
	}
	return r
}

// TestClaimStaleRecentRecord: the cached record of a task that another
// replica cancelled since says queued; the claim's write fails on the
// version, the record read again says cancelled, and the session is told
// the task ended.
func TestClaimStaleRecentRecord(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	ids := h.queueIDs(t, "default", dev1)
	stale := staleRecord(t, h, task.GetId(), nil)
	if _, err := h.public.CancelTask(as(t.Context(), h.operator), &tasksv1.CancelTaskRequest{Id: task.GetId()}); err != nil {
		t.Fatal(err)
	}
	h.svc.recent.put(stale) // as if another replica had cancelled it
	c := h.claim(t, "s1", ids...)
	if len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_ENDED {
		t.Fatalf("claim %v", c)
	}
	if got := h.get(t, task.GetId()); got.GetState() != tasksv1.TaskState_TASK_STATE_CANCELLED {
		t.Errorf("state %v", got.GetState())
	}
}

// TestClaimDecidesWithoutWriteOnStored: a cached record that would make
// the claim skip the task (a retry time to come) is not trusted; the
// stored one, with no retry time, makes the session run it.
func TestClaimDecidesWithoutWriteOnStored(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	ids := h.queueIDs(t, "default", dev1)
	h.svc.recent.put(staleRecord(t, h, task.GetId(), func(t *tasksv1.Task) {
		t.RetryTime = timestamppb.New(time.Now().Add(time.Hour))
	}))
	if c := h.claim(t, "s1", ids...); len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("claim %v", c)
	}
	if got := h.get(t, task.GetId()); got.GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED {
		t.Errorf("state %v", got.GetState())
	}
}

// TestClaimRecentRecordGone: a cached record of a task no longer stored is
// left out of the claim, which still claims the others.
func TestClaimRecentRecordGone(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	ids := h.queueIDs(t, "default", dev1)
	ghost := staleRecord(t, h, task.GetId(), nil)
	ghost.ID = recordid.New(time.Now())
	h.svc.recent.put(ghost)
	c := h.claim(t, "s1", append([]string{ghost.ID}, ids...)...)
	if len(c) != 1 || c[0].GetTask().GetId() != task.GetId() || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("claim %v", c)
	}
	if _, ok := h.svc.recent.get("default", ghost.ID); ok {
		t.Error("the cached record of the missing task is still kept")
	}
}

// TestRecentCacheBounded: the cache keeps its bytes under the bound,
// evicting the oldest first; a replaced or dropped record frees its
// bytes; the order kept does not grow with replacements.
func TestRecentCacheBounded(t *testing.T) {
	rec := func(id string, body int) store.Record {
		return store.Record{Tenant: "t", ID: id, DeviceID: "d", Body: make([]byte, body)}
	}
	one := size(&store.Record{Tenant: "t", ID: "a000", DeviceID: "d", Body: make([]byte, 100)})
	c := newRecentCache(64 * one)
	for i := range 80 {
		c.put(rec(fmt.Sprintf("a%03d", i), 100))
	}
	if c.bytes > c.max {
		t.Errorf("%d bytes kept, bound %d", c.bytes, c.max)
	}
	if _, ok := c.get("t", "a000"); ok {
		t.Error("the oldest record was not evicted")
	}
	if r, ok := c.get("t", "a079"); !ok || r.ID != "a079" {
		t.Errorf("the newest record: %v %v", r, ok)
	}
	c.drop("t", "a079")
	if _, ok := c.get("t", "a079"); ok {
		t.Error("dropped record still kept")
	}
	if c.bytes != (len(c.recs))*one {
		t.Errorf("bytes %d for %d records of %d", c.bytes, len(c.recs), one)
	}
	// A later version stays.
	later := rec("v", 10)
	later.Version = 5
	c.put(later)
	earlier := rec("v", 10)
	earlier.Version = 4
	c.put(earlier)
	if r, _ := c.get("t", "v"); r.Version != 5 {
		t.Errorf("version %d kept, want 5", r.Version)
	}
	// Too large for the cache.
	c.put(rec("big", c.max))
	if _, ok := c.get("t", "big"); ok {
		t.Error("a record over a sixteenth of the bound was kept")
	}
	// Replacements: the order stays bounded.
	for i := range 100_000 {
		c.put(rec("same", 100+i%2))
	}
	if len(c.order) > 2*len(c.recs)+1024+1 {
		t.Errorf("order holds %d slots for %d records", len(c.order), len(c.recs))
	}
	if r, ok := c.get("t", "same"); !ok || len(r.Body) != 101 {
		t.Errorf("replaced record: %v", ok)
	}
	var want int
	for _, e := range c.recs {
		want += size(&e.rec)
	}
	if c.bytes != want {
		t.Errorf("bytes %d after replacements, records hold %d", c.bytes, want)
	}
}
