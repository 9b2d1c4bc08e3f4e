package grpcinproc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/grpcinproc"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echo is a test service with one unary method, Echo, whose behaviour the
// request's value selects.
type echo interface {
	Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type echoServer struct {
	// got is the last request the handler saw.
	got *wrapperspb.StringValue
}

func (s *echoServer) Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	s.got = in
	switch in.GetValue() {
	case "plain-error":
		return nil, errors.New("something broke")
	case "status-error":
		return nil, status.Error(codes.FailedPrecondition, "not now")
	case "wrapped-status":
		return nil, fmt.Errorf("load: %w", status.Error(codes.NotFound, "no such device"))
	case "context-error":
		return nil, context.DeadlineExceeded
	case "metadata":
		md, _ := metadata.FromIncomingContext(ctx)
		return wrapperspb.String(fmt.Sprint(md.Get("x-tenant"))), nil
	case "deadline":
		if _, ok := ctx.Deadline(); !ok {
			return wrapperspb.String("no deadline"), nil
		}
		return wrapperspb.String("deadline"), nil
	case "header":
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-a", "b")); err != nil {
			return nil, err
		}
		return wrapperspb.String("header set"), nil
	}
	return wrapperspb.String("echo " + in.GetValue()), nil
}

func echoHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, req any) (any, error) {
		return srv.(echo).Echo(ctx, req.(*wrapperspb.StringValue))
	}
	if interceptor == nil {
		return call(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Echo/Echo"}, call)
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*echo)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: echoHandler}},
}

// channels returns the in-process channel and, for comparison, a real gRPC
// server over an in-memory connection, both serving srv.
func channels(t *testing.T, srv *echoServer) map[string]grpc.ClientConnInterface {
	t.Helper()
	in := grpcinproc.New(grpcinproc.Options{})
	in.RegisterService(&echoDesc, srv)

	gs := grpc.NewServer()
	gs.RegisterService(&echoDesc, srv)
	return map[string]grpc.ClientConnInterface{"inproc": in, "grpc": testenv.GRPCConn(t, gs)}
}

// TestSameAsRemote runs every case through the in-process channel and a
// real gRPC server: the caller must not be able to tell them apart.
func TestSameAsRemote(t *testing.T) {
	cases := []struct {
		in, want string
		code     codes.Code
		msg      string
	}{
		{in: "hello", want: "echo hello"},
		{in: "plain-error", code: codes.Unknown, msg: "something broke"},
		{in: "status-error", code: codes.FailedPrecondition, msg: "not now"},
		{in: "wrapped-status", code: codes.NotFound, msg: "load: rpc error: code = NotFound desc = no such device"},
		{in: "context-error", code: codes.DeadlineExceeded},
		{in: "metadata", want: "[acme]"},
		{in: "deadline", want: "deadline"},
		{in: "header", want: "header set"},
	}
	srv := &echoServer{}
	for name, cc := range channels(t, srv) {
		for _, tc := range cases {
			t.Run(name+"/"+tc.in, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ctx = metadata.AppendToOutgoingContext(ctx, "x-tenant", "acme")
				out := new(wrapperspb.StringValue)
				err := cc.Invoke(ctx, "/test.Echo/Echo", wrapperspb.String(tc.in), out)
				if tc.code != codes.OK {
					st, ok := status.FromError(err)
					if !ok || st.Code() != tc.code {
						t.Fatalf("error %v, want code %v", err, tc.code)
					}
					if tc.msg != "" && st.Message() != tc.msg {
						t.Fatalf("message %q, want %q", st.Message(), tc.msg)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if out.GetValue() != tc.want {
					t.Fatalf("reply %q, want %q", out.GetValue(), tc.want)
				}
			})
		}
	}
}

// TestOwnership: the handler works on its own copy of the request, and the
// caller's reply is not the handler's message.
func TestOwnership(t *testing.T) {
	srv := &echoServer{}
	ch := grpcinproc.New(grpcinproc.Options{})
	ch.RegisterService(&echoDesc, srv)
	req := wrapperspb.String("x")
	out := wrapperspb.String("stale")
	if err := ch.Invoke(context.Background(), "/test.Echo/Echo", req, out); err != nil {
		t.Fatal(err)
	}
	if srv.got == req {
		t.Fatal("handler got the caller's request message itself")
	}
	req.Value = "changed"
	if srv.got.GetValue() != "x" {
		t.Fatalf("handler's request changed with the caller's: %q", srv.got.GetValue())
	}
	if out.GetValue() != "echo x" {
		t.Fatalf("reply %q", out.GetValue())
	}
}

func TestCanceledBeforeCall(t *testing.T) {
	srv := &echoServer{}
	ch := grpcinproc.New(grpcinproc.Options{})
	ch.RegisterService(&echoDesc, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ch.Invoke(ctx, "/test.Echo/Echo", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.Canceled {
		t.Fatalf("error %v, want Canceled", err)
	}
	if srv.got != nil {
		t.Fatal("handler ran for a canceled call")
	}
}

func TestInterceptorRuns(t *testing.T) {
	var seen string
	ch := grpcinproc.New(grpcinproc.Options{Interceptor: func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen = info.FullMethod
		return h(ctx, req)
	}})
	ch.RegisterService(&echoDesc, &echoServer{})
	if err := ch.Invoke(context.Background(), "/test.Echo/Echo", wrapperspb.String("x"), new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	if seen != "/test.Echo/Echo" {
		t.Fatalf("interceptor saw %q", seen)
	}
}

// TestFallback: methods the channel does not serve go to the fallback, and
// without one fail with Unimplemented.
func TestFallback(t *testing.T) {
	hs := health.NewServer()
	remote := grpcinproc.New(grpcinproc.Options{})
	healthpb.RegisterHealthServer(remote, hs)

	ch := grpcinproc.New(grpcinproc.Options{Fallback: remote})
	ch.RegisterService(&echoDesc, &echoServer{})
	if !ch.Serves("test.Echo") || ch.Serves("grpc.health.v1.Health") {
		t.Fatal("Serves does not tell the registered services")
	}
	resp, err := healthpb.NewHealthClient(ch).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v", resp.GetStatus())
	}

	alone := grpcinproc.New(grpcinproc.Options{})
	_, err = healthpb.NewHealthClient(alone).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("error %v, want Unimplemented", err)
	}
	_, err = healthpb.NewHealthClient(alone).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("stream error %v, want Unimplemented", err)
	}
}

func TestRegisterChecks(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s: no panic", name)
			}
		}()
		f()
	}
	ch := grpcinproc.New(grpcinproc.Options{})
	ch.RegisterService(&echoDesc, &echoServer{})
	mustPanic("twice", func() { ch.RegisterService(&echoDesc, &echoServer{}) })
	mustPanic("wrong type", func() { grpcinproc.New(grpcinproc.Options{}).RegisterService(&echoDesc, struct{}{}) })
	mustPanic("nil", func() { grpcinproc.New(grpcinproc.Options{}).RegisterService(&echoDesc, nil) })
}

func BenchmarkInvoke(b *testing.B) {
	ch := grpcinproc.New(grpcinproc.Options{})
	ch.RegisterService(&echoDesc, &echoServer{})
	req := wrapperspb.String("bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := ch.Invoke(ctx, "/test.Echo/Echo", req, new(wrapperspb.StringValue)); err != nil {
			b.Fatal(err)
		}
	}
}
