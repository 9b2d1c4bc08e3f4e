package tasks

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
)

// readCounter counts the record reads that reach the store.
type readCounter struct {
	store.Store
	reads atomic.Int64
}

func (c *readCounter) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	c.reads.Add(1)
	return c.Store.Get(ctx, tenant, id)
}

func (c *readCounter) GetMany(ctx context.Context, tenant string, ids []string) ([]store.Record, error) {
	c.reads.Add(1)
	return c.Store.GetMany(ctx, tenant, ids)
}

// TestReportUsesClaimedRecord: the report of the session that claimed a
// task reads nothing from the store; a report of the task from a session
// whose claim this replica did not see reads it.
func TestReportUsesClaimedRecord(t *testing.T) {
	st := &readCounter{Store: sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "tasks.db")})}
	h := newHarness(t, harnessOpts{st: st})
	a := h.create(t, dev1, spv("Device.X", "1"), nil)
	b := h.create(t, dev1, spv("Device.Y", "2"), nil)
	ids := h.queueIDs(t, "default", dev1)
	if c := h.claim(t, "s1", ids...); len(c) != 2 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN || c[1].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("claim %v", c)
	}
	before := st.reads.Load()
	acks := h.report(t, "s1", done(a.GetId()), done(b.GetId()))
	if n := st.reads.Load() - before; n != 0 {
		t.Errorf("the claiming session's report read the store %d times", n)
	}
	for _, ack := range acks {
		if !ack.GetAccepted() || ack.GetState() != tasksv1.TaskState_TASK_STATE_DONE {
			t.Errorf("ack %v", ack)
		}
	}
	// Taken: a second report reads the store and finds the tasks ended.
	before = st.reads.Load()
	if acks := h.report(t, "s1", done(a.GetId())); acks[0].GetAccepted() {
		t.Errorf("second report accepted: %v", acks)
	}
	if st.reads.Load() == before {
		t.Error("second report read nothing from the store")
	}
}

// TestReportStaleClaimedRecord: a session's claim is cached, then a later
// session of the device takes the task over. The first session's report,
// made from its stale cached record, is refused (the compare-and-swap fails
// and the record read again names the other session), and the task stays
// with the second session, whose report ends it.
func TestReportStaleClaimedRecord(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	ids := h.queueIDs(t, "default", dev1)
	if c := h.claim(t, "s1", ids...); c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("claim s1 %v", c)
	}
	if c := h.claim(t, "s2", ids...); c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RESUME || c[0].GetPreviousSessionId() != "s1" {
		t.Fatalf("claim s2 %v", c)
	}
	if acks := h.report(t, "s1", done(task.GetId())); acks[0].GetAccepted() {
		t.Fatalf("report of the session taken over accepted: %v", acks)
	}
	if got := h.get(t, task.GetId()); got.GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED {
		t.Fatalf("after the stale report: %v", got.GetState())
	}
	if acks := h.report(t, "s2", done(task.GetId())); !acks[0].GetAccepted() || acks[0].GetState() != tasksv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("report of s2: %v", acks)
	}
}

// TestClaimCacheBounded: the cache evicts the oldest records once full and
// gives a record once.
func TestClaimCacheBounded(t *testing.T) {
	c := newClaimCache(2)
	for _, id := range []string{"a", "b", "c"} {
		c.put("s", store.Record{Tenant: "t", ID: id})
	}
	if _, ok := c.take("t", "a", "s"); ok {
		t.Error("the oldest record was not evicted")
	}
	if _, ok := c.take("t", "b", "other"); ok {
		t.Error("a record was given to another session")
	}
	for _, id := range []string{"b", "c"} {
		if r, ok := c.take("t", id, "s"); !ok || r.ID != id {
			t.Errorf("take %s: %v %v", id, r, ok)
		}
		if _, ok := c.take("t", id, "s"); ok {
			t.Errorf("%s given twice", id)
		}
	}
	if len(c.recs) != 0 {
		t.Errorf("%d records left", len(c.recs))
	}
}
