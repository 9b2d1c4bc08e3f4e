package apierror_test

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apierror"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
)

func TestShapes(t *testing.T) {
	st := status.Convert(apierror.New(codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND, "no task", map[string]string{"task_id": "x"},
		&errdetails.RetryInfo{}))
	d := st.Details()
	info, ok := d[0].(*errdetails.ErrorInfo)
	if st.Code() != codes.NotFound || st.Message() != "no task" || len(d) != 2 || !ok ||
		info.GetDomain() != "fleetacs" || info.GetReason() != "TASK_NOT_FOUND" || info.GetMetadata()["task_id"] != "x" {
		t.Fatalf("status %v, details %v", st, d)
	}
	if _, ok := d[1].(*errdetails.RetryInfo); !ok {
		t.Fatalf("extra detail %T", d[1])
	}
	st = status.Convert(apierror.InvalidField("device_id", "empty"))
	d = st.Details()
	br, ok := d[1].(*errdetails.BadRequest)
	if st.Code() != codes.InvalidArgument || st.Message() != "device_id: empty" || d[0].(*errdetails.ErrorInfo).GetReason() != "INVALID_FIELD" ||
		!ok || br.GetFieldViolations()[0].GetField() != "device_id" || br.GetFieldViolations()[0].GetDescription() != "empty" {
		t.Fatalf("status %v, details %v", st, d)
	}
}
