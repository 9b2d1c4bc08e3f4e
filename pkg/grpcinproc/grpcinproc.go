// Package grpcinproc is a gRPC channel to services that run in the same
// process: a client made from it calls the service's registered
// implementation directly, through the generated handler, with no
// serialisation, HTTP/2 framing or connection in between.
//
// fleetacs composes services in one process (`fleetacs all`). Their clients
// go through the generated stubs and reach the very handlers that serve
// remote callers, so the code paths above the transport are the production
// ones; only the transport is skipped. That transport cost about a third of
// the CPU of an Inform session in one process (BENCHMARKS.md).
//
// What a remote call guarantees and a direct one must keep:
//   - Ownership: the server gets its own copy of the request and the caller
//     its own copy of the response (proto.Merge into fresh messages), so
//     neither can see the other's later changes.
//   - Errors: the caller gets a *status.Status error, as from a remote
//     server: a handler error without one becomes codes.Unknown, a context
//     error Canceled or DeadlineExceeded.
//   - Metadata: outgoing metadata of the caller's context is the incoming
//     metadata of the handler's; deadlines and cancellation carry over with
//     the context itself, and so does the trace context.
//   - Interceptors: the server's unary interceptor (if any) runs.
//
// Only unary methods are served directly; a stream is handed to the
// fallback channel (the real transport) when one is set.
package grpcinproc

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Channel is both a grpc.ServiceRegistrar (services register on it as on a
// *grpc.Server) and a grpc.ClientConnInterface (generated clients call
// through it). Register every service before the first call.
type Channel struct {
	mu       sync.RWMutex
	methods  map[string]method // by full method name, "/pkg.Service/Method"
	fallback grpc.ClientConnInterface
	intercep grpc.UnaryServerInterceptor
	tracer   trace.Tracer
}

type method struct {
	impl    any
	handler grpc.MethodHandler
}

// Options configure a Channel.
type Options struct {
	// Fallback carries what the channel cannot serve directly: streams and
	// methods no service registered. Nil: such calls fail with
	// Unimplemented.
	Fallback grpc.ClientConnInterface
	// Interceptor runs around every handler, as the server's unary
	// interceptor would.
	Interceptor grpc.UnaryServerInterceptor
	// TracerProvider makes one internal span per call, named after the
	// method, so that a trace shows the hop it would show over the
	// network. Nil: no spans.
	TracerProvider trace.TracerProvider
}

// New returns an empty channel.
func New(o Options) *Channel {
	tp := o.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &Channel{
		methods:  map[string]method{},
		fallback: o.Fallback,
		intercep: o.Interceptor,
		tracer:   tp.Tracer("github.com/fleetacs/fleetacs/pkg/grpcinproc"),
	}
}

var (
	_ grpc.ServiceRegistrar    = (*Channel)(nil)
	_ grpc.ClientConnInterface = (*Channel)(nil)
)

// RegisterService implements grpc.ServiceRegistrar. Like grpc.Server's, it
// panics when impl does not implement the service or the service is
// registered twice: both are programming errors found at start-up.
func (c *Channel) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if impl == nil {
		panic(fmt.Sprintf("grpcinproc: nil implementation of %s", desc.ServiceName))
	}
	if ht := desc.HandlerType; ht != nil {
		if err := implements(impl, ht); err != nil {
			panic(fmt.Sprintf("grpcinproc: register %s: %v", desc.ServiceName, err))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range desc.Methods {
		name := "/" + desc.ServiceName + "/" + m.MethodName
		if _, dup := c.methods[name]; dup {
			panic(fmt.Sprintf("grpcinproc: %s registered twice", desc.ServiceName))
		}
		c.methods[name] = method{impl: impl, handler: m.Handler}
	}
}

// Serves reports whether service (a full name, "pkg.Service") has methods
// registered on the channel.
func (c *Channel) Serves(service string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	prefix := "/" + service + "/"
	for name := range c.methods {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// inProcessAddr is the peer address handlers see.
type inProcessAddr struct{}

func (inProcessAddr) Network() string { return "inproc" }
func (inProcessAddr) String() string  { return "inproc" }

// Invoke implements grpc.ClientConnInterface: it runs the registered
// handler of method with a copy of args and merges its answer into reply.
// Call options are ignored: they configure a transport there is not.
func (c *Channel) Invoke(ctx context.Context, fullMethod string, args, reply any, opts ...grpc.CallOption) error {
	c.mu.RLock()
	m, ok := c.methods[fullMethod]
	c.mu.RUnlock()
	if !ok {
		if c.fallback != nil {
			return c.fallback.Invoke(ctx, fullMethod, args, reply, opts...)
		}
		return status.Errorf(grpccodes.Unimplemented, "grpcinproc: no in-process service serves %s", fullMethod)
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(grpccodes.Internal, "grpcinproc: request of %s is %T, not a protocol buffer message", fullMethod, args)
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(grpccodes.Internal, "grpcinproc: reply of %s is %T, not a protocol buffer message", fullMethod, reply)
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}

	ctx, span := c.tracer.Start(ctx, strings.TrimPrefix(fullMethod, "/"),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.transport", "inproc")))
	defer span.End()

	sctx := peer.NewContext(ctx, &peer.Peer{Addr: inProcessAddr{}, LocalAddr: inProcessAddr{}})
	md, _ := metadata.FromOutgoingContext(ctx)
	sctx = metadata.NewIncomingContext(sctx, md.Copy())
	sctx = grpc.NewContextWithServerTransportStream(sctx, &serverStream{method: fullMethod})

	dec := func(dst any) error {
		msg, ok := dst.(proto.Message)
		if !ok {
			return status.Errorf(grpccodes.Internal, "grpcinproc: handler of %s decodes into %T", fullMethod, dst)
		}
		proto.Merge(msg, in)
		return nil
	}
	resp, err := m.handler(m.impl, sctx, dec, c.intercep)
	if err != nil {
		st := statusOf(err)
		span.SetStatus(codes.Error, st.Message())
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", int64(st.Code())))
		return st.Err()
	}
	msg, ok := resp.(proto.Message)
	if !ok || msg == nil {
		return status.Errorf(grpccodes.Internal, "grpcinproc: handler of %s returned %T", fullMethod, resp)
	}
	proto.Reset(out)
	proto.Merge(out, msg)
	return nil
}

// NewStream implements grpc.ClientConnInterface by handing the stream to
// the fallback channel.
func (c *Channel) NewStream(ctx context.Context, desc *grpc.StreamDesc, fullMethod string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.fallback != nil {
		return c.fallback.NewStream(ctx, desc, fullMethod, opts...)
	}
	return nil, status.Errorf(grpccodes.Unimplemented, "grpcinproc: streams are not served in process (%s)", fullMethod)
}

// statusOf turns a handler error into the status a remote caller would get.
func statusOf(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		return st
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err)
	}
	return status.New(grpccodes.Unknown, err.Error())
}

// serverStream lets handlers call grpc.SetHeader, SendHeader and
// SetTrailer as they may on a real server; with no transport, what they set
// goes nowhere.
type serverStream struct{ method string }

func (s *serverStream) Method() string               { return s.method }
func (s *serverStream) SetHeader(metadata.MD) error  { return nil }
func (s *serverStream) SendHeader(metadata.MD) error { return nil }
func (s *serverStream) SetTrailer(metadata.MD) error { return nil }

// implements checks what grpc.Server checks at registration: impl
// implements the service's handler interface (ht is a pointer to it).
func implements(impl, ht any) error {
	want := reflect.TypeOf(ht).Elem()
	if got := reflect.TypeOf(impl); !got.Implements(want) {
		return fmt.Errorf("%v does not implement %v", got, want)
	}
	return nil
}
