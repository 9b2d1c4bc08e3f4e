package sessions

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// GRPCTasks is the Tasks port over fleetacs.tasks.v1.TasksInternalService.
type GRPCTasks struct {
	c tasksv1.TasksInternalServiceClient
}

var _ Tasks = (*GRPCTasks)(nil)

// NewGRPCTasks returns the adapter over a connection to the tasks service
// (in-process or remote).
func NewGRPCTasks(cc grpc.ClientConnInterface) *GRPCTasks {
	return &GRPCTasks{c: tasksv1.NewTasksInternalServiceClient(cc)}
}

// ClaimTasks implements Tasks.
func (g *GRPCTasks) ClaimTasks(ctx context.Context, req *tasksv1.ClaimTasksRequest) (*tasksv1.ClaimTasksResponse, error) {
	resp, err := g.c.ClaimTasks(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("claim %d tasks of device %s: %w", len(req.GetTaskIds()), req.GetDeviceId(), err)
	}
	return resp, nil
}

// ReportTasks implements Tasks.
func (g *GRPCTasks) ReportTasks(ctx context.Context, req *tasksv1.ReportTasksRequest) (*tasksv1.ReportTasksResponse, error) {
	resp, err := g.c.ReportTasks(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("report %d tasks of device %s: %w", len(req.GetReports()), req.GetDeviceId(), err)
	}
	return resp, nil
}
