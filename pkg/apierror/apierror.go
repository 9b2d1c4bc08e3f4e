// Package apierror builds the errors of FleetACS's gRPC APIs as the
// catalogue words them (proto/errors.md): a status code, a message, and a
// google.rpc.ErrorInfo with domain "fleetacs" and a reason of
// fleetacs.errors.v1.ErrorReason. Every service's gRPC edge builds its
// errors here, so that clients match one shape.
package apierror

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
)

// Domain is the ErrorInfo domain of every FleetACS error.
const Domain = "fleetacs"

// New is a status of code with msg and an ErrorInfo of reason and
// metadata, followed by extra details (a RetryInfo, say).
func New(code codes.Code, reason errorsv1.ErrorReason, msg string, metadata map[string]string, extra ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{Domain: Domain, Reason: reason.String(), Metadata: metadata}}, extra...)
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}

// InvalidField is INVALID_ARGUMENT / INVALID_FIELD naming field, with a
// BadRequest that says what is wrong with it.
func InvalidField(field, msg string) error {
	return New(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD, field+": "+msg, nil,
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}})
}
