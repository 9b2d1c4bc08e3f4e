package cli

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// listRecorder answers ListTasks with nothing and records the requests.
type listRecorder struct {
	tasksv1.UnimplementedTasksServiceServer
	mu   sync.Mutex
	reqs []*tasksv1.ListTasksRequest
}

func (l *listRecorder) ListTasks(_ context.Context, req *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, req)
	return &tasksv1.ListTasksResponse{}, nil
}

// TestTasksListAge: -older-than and -newer-than become the creation-time
// bounds of ListTasks, back from now; a negative or empty range is a usage
// error that sends nothing.
func TestTasksListAge(t *testing.T) {
	l := &listRecorder{}
	cleanEnv(t)
	t.Setenv(envAddr, serveWith(t, func(s *grpc.Server) { tasksv1.RegisterTasksServiceServer(s, l) }))

	before := time.Now()
	wantOK(t, fleetctl(t, "tasks", "list", "-state", "queued", "-older-than", "24h", "-newer-than", "168h", "-o", "json"))
	after := time.Now()
	if len(l.reqs) != 1 {
		t.Fatalf("%d ListTasks calls", len(l.reqs))
	}
	req := l.reqs[0]
	within := func(name string, got time.Time, ago time.Duration) {
		t.Helper()
		if got.Before(before.Add(-ago)) || got.After(after.Add(-ago)) {
			t.Errorf("%s %v, want %v ago (between %v and %v)", name, got, ago, before.Add(-ago), after.Add(-ago))
		}
	}
	within("created_before", req.GetCreatedBefore().AsTime(), 24*time.Hour)
	within("created_after", req.GetCreatedAfter().AsTime(), 168*time.Hour)
	if len(req.GetStates()) != 1 || req.GetStates()[0] != tasksv1.TaskState_TASK_STATE_QUEUED {
		t.Errorf("states %v", req.GetStates())
	}

	wantOK(t, fleetctl(t, "tasks", "list"))
	if req := l.reqs[1]; req.GetCreatedBefore() != nil || req.GetCreatedAfter() != nil {
		t.Errorf("no age flags: request %v", req)
	}

	for _, args := range [][]string{
		{"-older-than", "-1h"},
		{"-older-than", "48h", "-newer-than", "24h"},
		{"-older-than", "24h", "-newer-than", "24h"},
	} {
		if r := fleetctl(t, append([]string{"tasks", "list"}, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage); stderr %q", args, r.code, r.stderr)
		}
	}
	if len(l.reqs) != 2 {
		t.Errorf("usage errors sent requests: %d calls", len(l.reqs))
	}
}
