package apiauth

import (
	"context"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// OnBehalfOfHeader is the metadata by which a trusted service calling on
// the internal listener names what it acts for ("campaign:<id>"), so that
// what it creates is recorded as that requester (a task's requester,
// docs/campaigns.md). It is read only from calls that carried the
// internal credential: on the public listener the credential's own
// principal is the requester, whatever the call says.
const OnBehalfOfHeader = "fleetacs-on-behalf-of"

// maxOnBehalfOf bounds the header's value.
const maxOnBehalfOf = 200

type internalKey struct{}

// withInternal marks ctx as a call the internal credential was checked
// for.
func withInternal(ctx context.Context) context.Context {
	return context.WithValue(ctx, internalKey{}, true)
}

// IsInternal reports whether ctx is a call that carried the internal
// credential (the internal server's interceptors checked it).
func IsInternal(ctx context.Context) bool {
	v, _ := ctx.Value(internalKey{}).(bool)
	return v
}

// InProcessInterceptor is the unary interceptor of an in-process channel
// to the internal services (pkg/grpcinproc): its callers are the
// process's own code, as trusted as the internal credential, so their
// calls are internal calls.
func InProcessInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(withInternal(ctx), req)
}

type internalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *internalStream) Context() context.Context { return s.ctx }

// Requester names who a call acts for: the principal of a public call;
// for an internal call, what the caller names in OnBehalfOfHeader (a
// value of printable characters up to 200 bytes; else nothing); empty
// otherwise.
func Requester(ctx context.Context) string {
	if p, ok := FromContext(ctx); ok {
		return p.ID
	}
	if !IsInternal(ctx) {
		return ""
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vs := md.Get(OnBehalfOfHeader)
	if len(vs) != 1 || len(vs[0]) == 0 || len(vs[0]) > maxOnBehalfOf {
		return ""
	}
	for _, r := range vs[0] {
		if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
			return ""
		}
	}
	return vs[0]
}

// OnBehalfOf returns ctx whose outgoing calls name requester in
// OnBehalfOfHeader.
func OnBehalfOf(ctx context.Context, requester string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, OnBehalfOfHeader, requester)
}
