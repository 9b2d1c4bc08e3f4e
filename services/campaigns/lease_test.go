package campaigns

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store/mongostore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// countingTasks is one replica's view of the shared tasks stand-in: it
// counts what this replica asked.
type countingTasks struct {
	*fakeTasks
	creates, gets atomic.Int64
}

func (c *countingTasks) CreateTask(ctx context.Context, req *tasksv1.CreateTaskRequest, opts ...grpc.CallOption) (*tasksv1.CreateTaskResponse, error) {
	c.creates.Add(1)
	return c.fakeTasks.CreateTask(ctx, req, opts...)
}

func (c *countingTasks) GetTask(ctx context.Context, req *tasksv1.GetTaskRequest, opts ...grpc.CallOption) (*tasksv1.GetTaskResponse, error) {
	c.gets.Add(1)
	return c.fakeTasks.GetTask(ctx, req, opts...)
}

func (c *countingTasks) calls() int64 { return c.creates.Load() + c.gets.Load() }

// replica is a campaigns service with its own client of the shared
// MongoDB-wire server (FerretDB), on the harness's fakes and clock.
func (h *harness) replica(t *testing.T, uri, db, id string) (*Service, *countingTasks) {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	ct := &countingTasks{fakeTasks: h.tasks}
	cfg := DefaultConfig()
	cfg.PageSize, cfg.Interval, cfg.LeaseTTL = 10, 10*time.Millisecond, 30*time.Second
	svc, err := New(cfg, Deps{Store: mongostore.New(client.Database(db)), Inventory: h.inv, Tasks: ct, Files: h.files, RunnerID: id,
		CallerTenants: func(context.Context) []string { return h.tenants },
		Now: func() time.Time {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.now
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(t.Context()); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return svc, ct
}

// TestLeaseOneRunnerPerCampaign: two replicas on one database. Only the
// holder of a campaign's lease follows it and creates its tasks; when the
// holder dies, the other takes over once the lease ended; when it stops
// (its Run returns), the other takes over at its next pass; and no device
// gets two tasks.
func TestLeaseOneRunnerPerCampaign(t *testing.T) {
	uri, db := testenv.MongoURI(t), testenv.MongoDatabase(t)
	h := &harness{t: t, inv: newInventory(30, "HGW"), tasks: newTasks(), files: &fakeFiles{},
		now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), tenants: []string{"default"}}
	a, ta := h.replica(t, uri, db, "replica-a")
	b, tb := h.replica(t, uri, db, "replica-b")
	h.svc = a
	spec := firmwareSpec()
	spec.Waves = nil
	c := h.create(spec)

	a.pass(t.Context())
	b.pass(t.Context())
	if ta.creates.Load() != 3 || tb.calls() != 0 {
		t.Fatalf("first passes: replica a created %d tasks, b made %d calls; want 3 and none", ta.creates.Load(), tb.calls())
	}
	h.upgrade("2.0")
	for range 3 {
		b.pass(t.Context())
	}
	a.pass(t.Context())
	if tb.calls() != 0 || ta.creates.Load() != 6 {
		t.Fatalf("second passes: a created %d, b made %d calls", ta.creates.Load(), tb.calls())
	}

	// a dies without a word: b waits for the lease to end (30s), then
	// carries on with a's tasks.
	h.upgrade("2.0")
	h.advance(29 * time.Second)
	b.pass(t.Context())
	if tb.calls() != 0 {
		t.Fatalf("b acted %d times while a's lease ran", tb.calls())
	}
	h.advance(time.Second)
	b.pass(t.Context())
	if tb.gets.Load() != 3 || tb.creates.Load() != 3 {
		t.Fatalf("after the lease ended: b followed %d and created %d, want 3 and 3", tb.gets.Load(), tb.creates.Load())
	}
	// a is back: b holds the campaign now.
	before := ta.calls()
	a.pass(t.Context())
	if ta.calls() != before {
		t.Fatalf("a acted on b's campaign")
	}

	// Both run; only b acts. Then b stops: a takes over at once.
	ctxA, stopA := context.WithCancel(t.Context())
	ctxB, stopB := context.WithCancel(t.Context())
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- a.Run(ctxA) }()
	go func() { doneB <- b.Run(ctxB) }()
	defer func() {
		stopA()
		stopB()
		<-doneA
		<-doneB
	}()
	h.upgrade("2.0")
	startA, startB := a.Passes(), tb.creates.Load()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if a.Passes() < startA+5 || tb.creates.Load() < startB+3 {
			return fmt.Errorf("a: %d passes, b: %d creates", a.Passes()-startA, tb.creates.Load()-startB)
		}
		return nil
	})
	if ta.calls() != before {
		t.Fatalf("a acted while b ran")
	}
	stopB()
	if err := <-doneB; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("b's Run: %v", err)
	}
	doneB <- nil // for the deferred wait
	testenv.WaitFor(t, 20*time.Second, func() error {
		h.upgrade("2.0")
		if st := h.get(c.GetId()).GetState(); st != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
			return fmt.Errorf("campaign %s", st)
		}
		return nil
	})
	if ta.calls() == before {
		t.Fatal("the campaign completed without a")
	}
	got := h.get(c.GetId())
	if got.GetTotals().GetSucceeded() != 30 {
		t.Fatalf("totals %v", got.GetTotals())
	}
	for d, n := range h.tasks.perDevice() {
		if n != 1 {
			t.Errorf("device %s got %d tasks", d, n)
		}
	}
}
