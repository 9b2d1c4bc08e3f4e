package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// publicServer implements TasksService. Authentication, roles and the
// tenant a request names are checked by the interceptors in front of it
// (package apiauth).
type publicServer struct {
	tasksv1.UnimplementedTasksServiceServer
	s *Service
}

func (s *Service) taskKey(ctx context.Context, tenant, id string) (string, error) {
	t, err := s.tenant(ctx, tenant)
	if err != nil {
		return "", err
	}
	if !recordid.Valid(id) {
		// An id of another form names no task: NOT_FOUND, as for an id
		// of another tenant.
		if id == "" {
			return "", invalidField("id", "must not be empty")
		}
		return "", apiError(codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND, "task not found", map[string]string{"task_id": truncate(id, 64)})
	}
	return t, s.checkReady()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// GetTask implements TasksService.
func (p *publicServer) GetTask(ctx context.Context, req *tasksv1.GetTaskRequest) (*tasksv1.GetTaskResponse, error) {
	tenant, err := p.s.taskKey(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, err
	}
	r, err := p.s.store.Get(ctx, tenant, req.GetId())
	if err != nil {
		return nil, p.s.statusOf(ctx, "get task", map[string]string{"task_id": req.GetId()}, err)
	}
	t, err := decodeTask(r)
	if err != nil {
		return nil, p.s.statusOf(ctx, "get task", nil, err)
	}
	return &tasksv1.GetTaskResponse{Task: t}, nil
}

// ListTasks implements TasksService.
func (p *publicServer) ListTasks(ctx context.Context, req *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	s := p.s
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	q := store.Query{Tenant: tenant, DeviceID: req.GetDeviceId()}
	if d := req.GetDeviceId(); d != "" {
		if err := checkDeviceID("device_id", d); err != nil {
			return nil, s.statusOf(ctx, "list tasks", nil, err)
		}
	}
	if len(req.GetStates()) > 16 || len(req.GetKinds()) > 32 {
		return nil, invalidField("states", "at most 16 states and 32 kinds")
	}
	for _, st := range req.GetStates() {
		if st == tasksv1.TaskState_TASK_STATE_UNSPECIFIED || tasksv1.TaskState_name[int32(st)] == "" {
			return nil, invalidField("states", fmt.Sprintf("%d is not a task state", st))
		}
		q.States = append(q.States, int32(st))
	}
	for _, k := range req.GetKinds() {
		if !validKind(k) {
			return nil, invalidField("kinds", fmt.Sprintf("%q is not an operation", truncate(k, 64)))
		}
		q.Kinds = append(q.Kinds, k)
	}
	if t := req.GetCreatedAfter(); t != nil {
		if t.CheckValid() != nil {
			return nil, invalidField("created_after", "not a valid timestamp")
		}
		q.CreatedAfter = t.AsTime()
	}
	if t := req.GetCreatedBefore(); t != nil {
		if t.CheckValid() != nil {
			return nil, invalidField("created_before", "not a valid timestamp")
		}
		q.CreatedBefore = t.AsTime()
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalidField("page_size", "must not be negative")
	case size == 0:
		size = 100
	case size > 1000:
		size = 1000
	}
	bind := listHash(tenant, req)
	if q.After, err = decodePageToken(req.GetPageToken(), bind); err != nil {
		return nil, err
	}
	if err := s.checkReady(); err != nil {
		return nil, err
	}
	q.Limit = size + 1
	recs, err := s.store.List(ctx, q)
	if err != nil {
		return nil, s.statusOf(ctx, "list tasks", nil, err)
	}
	out := &tasksv1.ListTasksResponse{}
	for i, r := range recs {
		if i == size {
			last := recs[size-1]
			out.NextPageToken = encodePageToken(store.Cursor{CreateTime: last.CreateTime, ID: last.ID}, bind)
			break
		}
		t, err := decodeTask(r)
		if err != nil {
			return nil, s.statusOf(ctx, "list tasks", nil, err)
		}
		out.Tasks = append(out.Tasks, publicTask(t, req.GetWithHistory()))
	}
	return out, nil
}

// Page tokens carry the store's cursor and a hash of the request fields
// that select the tasks, so that a token is refused with a request it did
// not come from (INVALID_PAGE_TOKEN) instead of paging another listing.
const tokenHashLen = 12

func listHash(tenant string, req *tasksv1.ListTasksRequest) []byte {
	r := proto.Clone(req).(*tasksv1.ListTasksRequest)
	r.Tenant, r.PageToken, r.PageSize, r.WithHistory = tenant, "", 0, false
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	sum := sha256.Sum256(b)
	return sum[:tokenHashLen]
}

func encodePageToken(c store.Cursor, bind []byte) string {
	b := append([]byte(nil), bind...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.CreateTime.UnixNano()))
	b = append(b, c.ID...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(token string, bind []byte) (*store.Cursor, error) {
	if token == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) != tokenHashLen+8+recordid.Length || string(b[:tokenHashLen]) != string(bind) || !recordid.Valid(string(b[tokenHashLen+8:])) {
		return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN,
			"page token is malformed or belongs to another request", nil)
	}
	ns := int64(binary.BigEndian.Uint64(b[tokenHashLen:]))
	return &store.Cursor{CreateTime: time.Unix(0, ns).UTC(), ID: string(b[tokenHashLen+8:])}, nil
}

// CancelTask implements TasksService.
func (p *publicServer) CancelTask(ctx context.Context, req *tasksv1.CancelTaskRequest) (*tasksv1.CancelTaskResponse, error) {
	s := p.s
	tenant, err := s.taskKey(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, err
	}
	md := map[string]string{"task_id": req.GetId()}
	r, err := s.store.Get(ctx, tenant, req.GetId())
	if err != nil {
		return nil, s.statusOf(ctx, "cancel task", md, err)
	}
	by := s.deps.Requester(ctx)
	t, _, err := s.change(ctx, r, deleteNow, "", func(now time.Time, t *tasksv1.Task, _ *store.Record) (bool, error) {
		switch t.GetState() {
		case tasksv1.TaskState_TASK_STATE_CANCELLED:
			return false, nil
		case tasksv1.TaskState_TASK_STATE_QUEUED:
			detail := "cancelled"
			if by != "" {
				detail += " by " + by
			}
			enter(t, tasksv1.TaskState_TASK_STATE_CANCELLED, now, detail)
			t.RetryTime = nil
			return true, nil
		}
		md["state"] = t.GetState().String()
		return false, errNotCancellable
	})
	if err != nil {
		return nil, s.statusOf(ctx, "cancel task", md, err)
	}
	return &tasksv1.CancelTaskResponse{Task: t}, nil
}
