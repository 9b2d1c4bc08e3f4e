package apiauth

import (
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fleetacs/fleetacs/pkg/apierror"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
)

// The errors of this package, as the catalogue (proto/errors.md) words
// them. Messages never say which part of a credential was wrong.

func apiError(code codes.Code, reason errorsv1.ErrorReason, msg string, md map[string]string, extra ...*errdetails.RetryInfo) error {
	details := make([]protoadapt.MessageV1, len(extra))
	for i, e := range extra {
		details[i] = e
	}
	return apierror.New(code, reason, msg, md, details...)
}

func errMissing() error {
	return apiError(codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_MISSING,
		"no credentials: send \"authorization: Bearer <token>\" or a client certificate", nil)
}

func errInvalid() error {
	return apiError(codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_INVALID,
		"credentials are malformed, unknown, revoked or expired", nil)
}

func errRole(method string, role authv1.Role) error {
	return apiError(codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN,
		"role "+RoleName(role)+" may not call "+method, map[string]string{"method": method, "role": RoleName(role)})
}

func errTenant(tenant string) error {
	return apiError(codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN,
		"the credentials do not cover tenant "+tenant, map[string]string{"tenant": tenant})
}

func errRateLimited(wait time.Duration) error {
	return apiError(codes.ResourceExhausted, errorsv1.ErrorReason_RATE_LIMITED,
		"too many invalid credentials from this address", nil,
		&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)})
}

func errUnavailable() error {
	return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "token store unavailable", nil)
}

var invalidField = apierror.InvalidField

func errUnimplemented() error {
	return status.Error(codes.Unimplemented, "unknown method")
}

func statusFromContext(err error) error { return status.FromContextError(err).Err() }
