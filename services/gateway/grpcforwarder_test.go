package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// grpcWorkerFake is a SessionService that records what it receives and
// answers with a fixed error code or response.
type grpcWorkerFake struct {
	sessionsv1.UnimplementedSessionServiceServer
	code codes.Code

	mu       sync.Mutex
	requests []*sessionsv1.ExchangeRequest
	md       []metadata.MD
	abandons []*sessionsv1.AbandonRequest
}

func (w *grpcWorkerFake) Exchange(ctx context.Context, req *sessionsv1.ExchangeRequest) (*sessionsv1.ExchangeResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	w.requests = append(w.requests, req)
	w.md = append(w.md, md)
	if w.code != codes.OK {
		return nil, status.Error(w.code, "refused")
	}
	return &sessionsv1.ExchangeResponse{HttpStatus: 503, RetryAfter: durationpb.New(1500 * time.Millisecond), SessionEnded: false, SetSessionCookie: req.GetSessionId()}, nil
}

func (w *grpcWorkerFake) Abandon(_ context.Context, req *sessionsv1.AbandonRequest) (*sessionsv1.AbandonResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.abandons = append(w.abandons, req)
	return &sessionsv1.AbandonResponse{}, nil
}

func (w *grpcWorkerFake) got() ([]*sessionsv1.ExchangeRequest, []metadata.MD, []*sessionsv1.AbandonRequest) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*sessionsv1.ExchangeRequest(nil), w.requests...), append([]metadata.MD(nil), w.md...), append([]*sessionsv1.AbandonRequest(nil), w.abandons...)
}

func serveFakeWorker(t *testing.T, w *grpcWorkerFake) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sessionsv1.RegisterSessionServiceServer(srv, w)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func TestGRPCForwarder(t *testing.T) {
	draining := &grpcWorkerFake{code: codes.Unavailable}
	full := &grpcWorkerFake{code: codes.ResourceExhausted}
	good := &grpcWorkerFake{}
	drainingAddr, fullAddr, goodAddr := serveFakeWorker(t, draining), serveFakeWorker(t, full), serveFakeWorker(t, good)

	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := NewGRPCForwarder(StaticWorkers{drainingAddr, goodAddr}, GRPCForwarderOptions{TracerProvider: tp})
	t.Cleanup(func() { _ = f.Close() })
	withFull := NewGRPCForwarder(StaticWorkers{fullAddr, goodAddr}, GRPCForwarderOptions{TracerProvider: tp})
	t.Cleanup(func() { _ = withFull.Close() })

	ctx, span := tp.Tracer("test").Start(context.Background(), "cwmp.request")
	defer span.End()
	expires := time.Date(2026, 3, 1, 12, 2, 0, 0, time.UTC)
	ex := &Exchange{
		SessionID: "S1", NewSession: true, Tenant: "t1", DeviceKey: "00D09E-Router-SN1",
		DeviceID: &cwmp.DeviceID{Manufacturer: "Acme", OUI: "00D09E", ProductClass: "Router", SerialNumber: "SN1"},
		Lease:    &Lease{FencingToken: 42, Expires: expires, Superseded: "S0"},
		Body:     []byte("<Envelope/>"), Charset: "utf-8", RemoteAddr: "192.0.2.1:1234", TLS: true,
		Auth:   Auth{Method: AuthDigest, Principal: "cpe", Scope: ScopeShared},
		Worker: drainingAddr, // recorded, but draining: the next worker resumes
	}
	r, err := f.Exchange(ctx, ex)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if r.Worker != goodAddr || r.Status != 503 || r.RetryAfter != 1500*time.Millisecond || !r.SessionEnded || r.SetSessionCookie != "S1" {
		t.Fatalf("reply %+v", r)
	}
	reqs, mds, _ := good.got()
	if len(reqs) != 1 {
		t.Fatalf("good worker saw %d requests", len(reqs))
	}
	q := reqs[0]
	if q.GetSessionId() != "S1" || !q.GetNewSession() || q.GetTenant() != "t1" || q.GetDeviceKey() != "00D09E-Router-SN1" ||
		q.GetDeviceId().GetSerialNumber() != "SN1" || q.GetDeviceId().GetOui() != "00D09E" ||
		q.GetLease().GetFencingToken() != 42 || !q.GetLease().GetExpireTime().AsTime().Equal(expires) || q.GetLease().GetSupersededSessionId() != "S0" ||
		string(q.GetBody()) != "<Envelope/>" || q.GetCharset() != "utf-8" || q.GetRemoteAddr() != "192.0.2.1:1234" || !q.GetTls() ||
		q.GetAuth().GetMethod() != sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST || q.GetAuth().GetPrincipal() != "cpe" ||
		q.GetAuth().GetScope() != sessionsv1.CredentialScope_CREDENTIAL_SCOPE_SHARED {
		t.Fatalf("request %v", q)
	}
	if tp := strings.Join(mds[0].Get("traceparent"), ""); !strings.Contains(tp, span.SpanContext().TraceID().String()) {
		t.Fatalf("traceparent %q does not carry trace %s", tp, span.SpanContext().TraceID())
	}
	if reqs, _, _ := draining.got(); len(reqs) != 1 {
		t.Fatalf("draining worker saw %d requests", len(reqs))
	}

	// A full worker sheds a new session at once...
	ex.Worker = fullAddr
	if _, err := withFull.Exchange(ctx, ex); !errors.Is(err, ErrWorkersBusy) {
		t.Fatalf("new session at a full worker: %v", err)
	}
	// ...but an open session moves on to a worker with room.
	ex.NewSession = false
	if r, err := withFull.Exchange(ctx, ex); err != nil || r.Worker != goodAddr {
		t.Fatalf("open session at a full worker: %+v %v", r, err)
	}

	if err := f.Abandon(ctx, &Abandonment{SessionID: "S1", Tenant: "t1", DeviceKey: "k", Reason: AbandonSuperseded, Worker: goodAddr}); err != nil {
		t.Fatalf("Abandon: %v", err)
	}
	if _, _, abs := good.got(); len(abs) != 1 || abs[0].GetReason() != sessionsv1.AbandonReason_ABANDON_REASON_SUPERSEDED || abs[0].GetSessionId() != "S1" {
		t.Fatalf("abandons %v", abs)
	}

	none := NewGRPCForwarder(StaticWorkers{}, GRPCForwarderOptions{})
	if _, err := none.Exchange(ctx, &Exchange{SessionID: "S2"}); !errors.Is(err, ErrNoWorkers) {
		t.Fatalf("no workers: %v", err)
	}
}

func TestWorkerOrder(t *testing.T) {
	f := NewGRPCForwarder(StaticWorkers{"a:1", "b:1", "c:1", "d:1"}, GRPCForwarderOptions{MaxAttempts: 3})
	ctx := context.Background()
	ids := func(ws []affinity.Worker) string {
		var out []string
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return strings.Join(out, ",")
	}
	plain, _ := f.order(ctx, "session-x", "")
	live, _ := StaticWorkers{"a:1", "b:1", "c:1", "d:1"}.Live(ctx)
	if want := ids(affinity.RendezvousOrder("session-x", live)[:3]); ids(plain) != want {
		t.Fatalf("order %s, want the rendezvous order %s capped at 3", ids(plain), want)
	}
	last := affinity.RendezvousOrder("session-x", live)[3].ID
	rec, _ := f.order(ctx, "session-x", last)
	if rec[0].ID != last || len(rec) != 3 {
		t.Fatalf("recorded live worker not first: %s", ids(rec))
	}
	gone, _ := f.order(ctx, "session-x", "z:1")
	if ids(gone) != ids(plain) {
		t.Fatalf("a recorded worker that is not alive changed the order: %s", ids(gone))
	}
}

// splitCredentials are per-call credentials writing the trace context, as
// apiauth.Internal.DialOptionsAdding(telemetry.AddTraceContext) does.
type splitCredentials struct{}

func (splitCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	md := map[string]string{}
	telemetry.AddTraceContext(ctx, md)
	return md, nil
}

func (splitCredentials) RequireTransportSecurity() bool { return false }

// TestGRPCForwarderSplitUnsampled: with SplitUnsampled, an exchange under
// an unsampled span reaches the worker with that span's traceparent (flags
// 00), written by UnsampledDialOptions' credentials or, without them, by
// SplitConn; a sampled one goes through the instrumented connection, which
// writes its own span's traceparent (flags 01), once.
func TestGRPCForwarderSplitUnsampled(t *testing.T) {
	for _, creds := range []bool{true, false} {
		t.Run(fmt.Sprintf("credentials=%v", creds), func(t *testing.T) {
			w := &grpcWorkerFake{}
			addr := serveFakeWorker(t, w)
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			o := GRPCForwarderOptions{TracerProvider: tp, Propagator: telemetry.Propagator{}, SplitUnsampled: true,
				WrapStats: func(h stats.Handler, client bool) stats.Handler {
					return telemetry.SkipUnsampled(h, telemetry.Propagator{}, client)
				}}
			if creds {
				o.UnsampledDialOptions = []grpc.DialOption{grpc.WithPerRPCCredentials(splitCredentials{})}
			}
			f := NewGRPCForwarder(StaticWorkers{addr}, o)
			t.Cleanup(func() { _ = f.Close() })
			span := func(flags trace.TraceFlags) trace.SpanContext {
				return trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xa, 1}, SpanID: trace.SpanID{0xb, 2}, TraceFlags: flags})
			}
			for i, sc := range []trace.SpanContext{span(0), span(trace.FlagsSampled)} {
				ex := &Exchange{SessionID: fmt.Sprintf("S%d", i), NewSession: true, Tenant: "t1", DeviceKey: "00D09E-Router-SN1", Body: []byte("<Envelope/>")}
				if _, err := f.Exchange(trace.ContextWithSpanContext(context.Background(), sc), ex); err != nil {
					t.Fatal(err)
				}
				_, mds, _ := w.got()
				tps := mds[len(mds)-1].Get("traceparent")
				if len(tps) != 1 || !strings.HasPrefix(tps[0], "00-0a010000000000000000000000000000-") {
					t.Fatalf("exchange %d: traceparent %q, want one in trace %s", i, tps, sc.TraceID())
				}
				unsampled := strings.HasSuffix(tps[0], "-0b02000000000000-00")
				if unsampled != !sc.IsSampled() || sc.IsSampled() && !strings.HasSuffix(tps[0], "-01") {
					t.Fatalf("exchange %d (sampled %v): traceparent %q", i, sc.IsSampled(), tps[0])
				}
			}
		})
	}
}
