package tasks

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apierror"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// This file is the gRPC edge of the service's errors: sentinels and store
// errors become status codes and reasons of the catalogue
// (proto/errors.md) here, and nowhere deeper.

// apiError and invalidField build the catalogue's errors.
var (
	apiError     = apierror.New
	invalidField = apierror.InvalidField
)

// fieldError is a request field that cannot be used; invalidField turns it
// into INVALID_ARGUMENT / INVALID_FIELD with a BadRequest.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func badField(field, msg string) error { return &fieldError{field: field, msg: msg} }

// Sentinels of the service's own decisions.
var (
	errNotReady       = errors.New("tasks store not started")
	errDeviceNotFound = errors.New("device not found")
	errQueueFull      = errors.New("the device's task queue is full")
	errNotCancellable = errors.New("task not cancellable")
	errIdempotency    = errors.New("idempotency key used for another request")
	// errBus: NATS could not be reached or refused a publish.
	errBus = errors.New("NATS unavailable")
)

// statusOf maps an error of the service to a status. Unexpected errors are
// logged here, with what was being done, and shown without internals.
func (s *Service) statusOf(ctx context.Context, action string, md map[string]string, err error) error {
	var fe *fieldError
	if _, ok := status.FromError(err); ok && err != nil {
		return err
	}
	switch {
	case errors.As(err, &fe):
		return invalidField(fe.field, fe.msg)
	case errors.Is(err, store.ErrNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND, "task not found", pick(md, "task_id"))
	case errors.Is(err, errDeviceNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND, "device not found", pick(md, "tenant", "device_id"))
	case errors.Is(err, errQueueFull):
		return apiError(codes.ResourceExhausted, errorsv1.ErrorReason_QUEUE_FULL, errQueueFull.Error(), pick(md, "device_id"))
	case errors.Is(err, errNotCancellable):
		return apiError(codes.FailedPrecondition, errorsv1.ErrorReason_TASK_NOT_CANCELLABLE, "the task was dispatched or has ended", pick(md, "task_id", "state"))
	case errors.Is(err, errIdempotency):
		return apiError(codes.AlreadyExists, errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT, "the idempotency key was used for another device or operation", pick(md, "idempotency_key", "task_id"))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, errNotReady), errors.Is(err, store.ErrUnavailable), errors.Is(err, errBus):
		s.logger.WarnContext(ctx, "tasks call failed", "action", action, "error", err)
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "task store unavailable", nil)
	}
	s.logger.ErrorContext(ctx, "tasks call failed", "action", action, "error", err)
	tid := trace.SpanContextFromContext(ctx).TraceID()
	var tmd map[string]string
	if tid.IsValid() {
		tmd = map[string]string{"trace_id": tid.String()}
	}
	return apiError(codes.Internal, errorsv1.ErrorReason_INTERNAL_ERROR, "internal error", tmd)
}

func pick(md map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := md[k]; ok {
			out[k] = v
		}
	}
	return out
}

func (s *Service) checkReady() error {
	if !s.ready.Load() {
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, errNotReady.Error(), nil)
	}
	return nil
}
