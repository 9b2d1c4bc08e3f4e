package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Workers lists the session workers a gateway may call: pkg/affinity's
// LiveCache over the worker registry, or StaticWorkers.
type Workers interface {
	// Live returns the workers alive now.
	Live(ctx context.Context) ([]affinity.Worker, error)
}

var _ Workers = (*affinity.LiveCache)(nil)

// StaticWorkers is a fixed list of worker addresses, each its own ID.
type StaticWorkers []string

// Live implements Workers.
func (w StaticWorkers) Live(context.Context) ([]affinity.Worker, error) {
	out := make([]affinity.Worker, len(w))
	for i, addr := range w {
		out[i] = affinity.Worker{ID: addr, Addr: addr}
	}
	return out, nil
}

// GRPCForwarderOptions configure a GRPCForwarder.
type GRPCForwarderOptions struct {
	// DialOptions are added to every worker connection; they carry the
	// transport credentials (mTLS between services). Without
	// credentials among them, connections are plain-text.
	DialOptions []grpc.DialOption
	// TracerProvider and Propagator feed the OpenTelemetry gRPC
	// instrumentation, which carries the trace context to the worker in
	// metadata (Propagator nil: W3C trace context). A nil TracerProvider
	// leaves the connections uninstrumented: no spans, no trace context.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// WrapStats, when set, wraps that instrumentation (the process's
	// telemetry.Providers.GRPCStats: no span for an unsampled call).
	WrapStats func(h stats.Handler, client bool) stats.Handler
	// SplitUnsampled, when set (the process's
	// telemetry.Providers.SkipsUnsampled), gives each worker a second
	// connection, without the instrumentation, for the calls made under
	// an unsampled span (telemetry.SplitConn).
	SplitUnsampled bool
	// UnsampledDialOptions, when set, replace DialOptions on that second
	// connection, and carry each call's trace context in its per-call
	// credentials themselves (telemetry.AddTraceContext through
	// apiauth.Internal.DialOptionsAdding).
	UnsampledDialOptions []grpc.DialOption
	// LocalConn, when set, returns a channel to a worker in this very
	// process for its address (grpcinproc), or nil to dial it.
	LocalConn func(addr string) grpc.ClientConnInterface
	// MaxAttempts bounds how many workers one exchange tries (default 3).
	MaxAttempts int
}

// GRPCForwarder is the Forwarder over fleetacs.sessions.v1.SessionService.
// It sends an exchange to the worker the affinity record names (when the
// registry still lists it), else to the first worker of the session's
// rendezvous order, and moves on to the next
// in that order when a worker did not start the exchange (UNAVAILABLE, or
// RESOURCE_EXHAUSTED for an open session, which its checkpoint lets another
// worker resume). A new session that meets RESOURCE_EXHAUSTED gets
// ErrWorkersBusy at once: the gateway sheds it rather than pushing load
// around.
type GRPCForwarder struct {
	workers Workers
	opts    []grpc.DialOption
	// plainOpts dial a worker's connection for unsampled calls; nil
	// when they share the instrumented one.
	plainOpts []grpc.DialOption
	// prop is SplitConn's (nil: plainOpts carry the trace context).
	prop  propagation.TextMapPropagator
	local func(addr string) grpc.ClientConnInterface
	max   int

	mu      sync.Mutex
	clients map[string]*grpcWorker
	closed  bool
}

type grpcWorker struct {
	conn   *grpc.ClientConn // nil for a worker in this process
	plain  *grpc.ClientConn // the connection for unsampled calls, if any
	client sessionsv1.SessionServiceClient
}

var _ Forwarder = (*GRPCForwarder)(nil)

// NewGRPCForwarder returns a forwarder to workers. It does no I/O:
// connections are made on first use.
func NewGRPCForwarder(workers Workers, o GRPCForwarderOptions) *GRPCForwarder {
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	var plain []grpc.DialOption
	prop := o.Propagator
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	// splitProp is SplitConn's: nil when the unsampled connection carries
	// the trace context itself.
	splitProp := prop
	if o.TracerProvider != nil {
		if o.SplitUnsampled {
			plain = append(plain, dial...)
			if o.UnsampledDialOptions != nil {
				plain, splitProp = append(plain, o.UnsampledDialOptions...), nil
			} else {
				plain = append(plain, o.DialOptions...)
			}
		}
		// Spans only: the instrumentation's RPC metrics (a no-op meter
		// here, not the global one) would build an attribute set per
		// call.
		var sh stats.Handler = otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(o.TracerProvider), otelgrpc.WithPropagators(prop),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()))
		if o.WrapStats != nil {
			sh = o.WrapStats(sh, true)
		}
		dial = append(dial, grpc.WithStatsHandler(sh))
	}
	// Caller options come last and so win (their credentials replace the
	// plain-text default).
	dial = append(dial, o.DialOptions...)
	maxAttempts := o.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 3
	}
	return &GRPCForwarder{workers: workers, opts: dial, plainOpts: plain, prop: splitProp, local: o.LocalConn, max: maxAttempts, clients: map[string]*grpcWorker{}}
}

// Close closes every worker connection.
func (f *GRPCForwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	var errs []error
	for addr, w := range f.clients {
		if w.conn == nil {
			delete(f.clients, addr)
			continue
		}
		if err := w.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to worker %s: %w", addr, err))
		}
		if w.plain != nil {
			if err := w.plain.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close connection to worker %s: %w", addr, err))
			}
		}
		delete(f.clients, addr)
	}
	return errors.Join(errs...)
}

func (f *GRPCForwarder) client(addr string) (sessionsv1.SessionServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errors.New("forwarder closed")
	}
	if w, ok := f.clients[addr]; ok {
		return w.client, nil
	}
	if f.local != nil {
		if cc := f.local(addr); cc != nil {
			w := &grpcWorker{client: sessionsv1.NewSessionServiceClient(cc)}
			f.clients[addr] = w
			return w.client, nil
		}
	}
	conn, err := grpc.NewClient(addr, f.opts...)
	if err != nil {
		return nil, fmt.Errorf("create client for worker %s: %w", addr, err)
	}
	w := &grpcWorker{conn: conn, client: sessionsv1.NewSessionServiceClient(conn)}
	if f.plainOpts != nil {
		plain, err := grpc.NewClient(addr, f.plainOpts...)
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("create client for worker %s: %w", addr, err)
		}
		w.plain = plain
		w.client = sessionsv1.NewSessionServiceClient(telemetry.SplitConn(plain, conn, f.prop))
	}
	f.clients[addr] = w
	return w.client, nil
}

// order returns the workers to try for a session: the recorded one first
// if it is still alive, then the others by rendezvous hashing on the session
// ID (affinity.RendezvousOrder), so every gateway replica picks the same
// worker for a session whose record is lost.
func (f *GRPCForwarder) order(ctx context.Context, sessionID, recorded string) ([]affinity.Worker, error) {
	live, err := f.workers.Live(ctx)
	if err != nil && len(live) == 0 {
		return nil, fmt.Errorf("list live workers: %w", err)
	}
	// With an error and a stale list (LiveCache), keep routing on the list.
	out := make([]affinity.Worker, 0, len(live))
	if recorded != "" {
		for _, w := range live {
			if w.ID == recorded {
				out = append(out, w)
				break
			}
		}
	}
	for _, w := range affinity.RendezvousOrder(sessionID, live) {
		if w.ID != recorded {
			out = append(out, w)
		}
	}
	if len(out) > f.max {
		out = out[:f.max]
	}
	return out, nil
}

// Exchange implements Forwarder.
func (f *GRPCForwarder) Exchange(ctx context.Context, ex *Exchange) (*Reply, error) {
	workers, err := f.order(ctx, ex.SessionID, ex.Worker)
	if err != nil {
		return nil, err
	}
	if len(workers) == 0 {
		return nil, fmt.Errorf("exchange: %w", ErrNoWorkers)
	}
	req := exchangeRequest(ex)
	var lastErr error
	busy := false
	for _, w := range workers {
		addr := w.Addr
		c, err := f.client(addr)
		if err != nil {
			lastErr = err
			continue
		}
		resp, err := c.Exchange(ctx, req)
		if err == nil {
			r := replyOf(resp)
			r.Worker = w.ID
			return r, nil
		}
		switch status.Code(err) {
		case codes.Unavailable:
			// The worker did not start the exchange (draining, down):
			// another one resumes the session from its checkpoint.
			lastErr = fmt.Errorf("exchange with worker %s: %w", addr, err)
			continue
		case codes.ResourceExhausted:
			busy = true
			if ex.NewSession {
				return nil, fmt.Errorf("exchange with worker %s: %w", addr, ErrWorkersBusy)
			}
			lastErr = fmt.Errorf("exchange with worker %s: %w", addr, err)
			continue
		}
		return nil, fmt.Errorf("exchange with worker %s: %w", addr, err)
	}
	if busy {
		return nil, fmt.Errorf("exchange: %w (last: %v)", ErrWorkersBusy, lastErr)
	}
	return nil, lastErr
}

// ErrNoWorkers is returned when no session worker is registered.
var ErrNoWorkers = errors.New("no live session workers")

// Abandon implements Forwarder.
func (f *GRPCForwarder) Abandon(ctx context.Context, ab *Abandonment) error {
	workers, err := f.order(ctx, ab.SessionID, ab.Worker)
	if err != nil {
		return err
	}
	if len(workers) == 0 {
		return fmt.Errorf("abandon: %w", ErrNoWorkers)
	}
	c, err := f.client(workers[0].Addr)
	if err != nil {
		return err
	}
	_, err = c.Abandon(ctx, &sessionsv1.AbandonRequest{
		SessionId: ab.SessionID, Tenant: ab.Tenant, DeviceKey: ab.DeviceKey,
		Reason: sessionsv1.AbandonReason(ab.Reason),
	})
	if err != nil {
		return fmt.Errorf("abandon session on worker %s: %w", workers[0].ID, err)
	}
	return nil
}

// exchangeRequest maps an Exchange to its gRPC message.
func exchangeRequest(ex *Exchange) *sessionsv1.ExchangeRequest {
	req := &sessionsv1.ExchangeRequest{
		SessionId:  ex.SessionID,
		NewSession: ex.NewSession,
		Tenant:     ex.Tenant,
		DeviceKey:  ex.DeviceKey,
		Body:       ex.Body,
		Charset:    ex.Charset,
		RemoteAddr: ex.RemoteAddr,
		Tls:        ex.TLS,
		Auth: &sessionsv1.CpeAuthentication{
			Method:    sessionsv1.CpeAuthMethod(ex.Auth.Method),
			Principal: ex.Auth.Principal,
			Scope:     sessionsv1.CredentialScope(ex.Auth.Scope),
		},
	}
	if id := ex.DeviceID; id != nil {
		req.DeviceId = &sessionsv1.DeviceId{Manufacturer: id.Manufacturer, Oui: id.OUI, ProductClass: id.ProductClass, SerialNumber: id.SerialNumber}
	}
	if l := ex.Lease; l != nil {
		req.Lease = &sessionsv1.DeviceLease{FencingToken: l.FencingToken, ExpireTime: timestamppb.New(l.Expires), SupersededSessionId: l.Superseded}
	}
	return req
}

// replyOf maps the gRPC answer to a Reply.
func replyOf(resp *sessionsv1.ExchangeResponse) *Reply {
	r := &Reply{
		Status:           int(resp.GetHttpStatus()),
		Body:             resp.GetBody(),
		SessionEnded:     resp.GetSessionEnded(),
		SetSessionCookie: resp.GetSetSessionCookie(),
	}
	if d := resp.GetRetryAfter(); d != nil {
		r.RetryAfter = d.AsDuration()
	}
	if r.Status != http.StatusOK {
		// The contract: only 200 leaves a session open.
		r.SessionEnded = true
	}
	return r
}
