package notifier

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

var _ lifecycle.Service = (*Service)(nil)

// maxWakeBytes bounds a wake request: tenant, device and a few task ids.
const maxWakeBytes = 64 << 10

// Start opens the STUN listener and creates (or updates) the durable
// consumer on the wake stream.
func (s *Service) Start(ctx context.Context) error {
	if s.js == nil {
		return errors.New("notifier: no JetStream")
	}
	// Asked again while NATS does not answer (a node lost at start).
	cons, err := natsbus.EnsureConsumer(ctx, s.js, s.names.WakeStream(), jetstream.ConsumerConfig{
		Durable:     ConsumerName,
		Description: "FleetACS notifiers: connection requests",
		AckPolicy:   jetstream.AckExplicitPolicy,
		// A request takes at most the HTTP timeout, or the UDP copies'
		// pauses; the margin covers the inventory call and the publish.
		AckWait:       s.cfg.RequestTimeout + s.udpDuration() + 30*time.Second,
		MaxDeliver:    5,
		MaxAckPending: 4 * s.cfg.MaxConcurrent,
	})
	if err != nil {
		return fmt.Errorf("create the %s consumer on %s: %w", ConsumerName, s.names.WakeStream(), err)
	}
	s.mu.Lock()
	s.consumer = cons
	s.mu.Unlock()
	if s.cfg.STUNAddr != "" {
		ua, err := net.ResolveUDPAddr("udp", s.cfg.STUNAddr)
		if err != nil {
			return fmt.Errorf("notifier.stun-addr %s: %w", s.cfg.STUNAddr, err)
		}
		conn, err := net.ListenUDP("udp", ua)
		if err != nil {
			return fmt.Errorf("listen for STUN on %s (-notifier.stun-addr): %w", s.cfg.STUNAddr, err)
		}
		s.mu.Lock()
		s.stun = conn
		s.mu.Unlock()
		s.logger.Info("STUN server listening", "addr", conn.LocalAddr().String())
	}
	if s.cfg.AllowLoopback {
		s.logger.Warn("connection requests may go to loopback addresses (-notifier.allow-loopback): only for CPEs simulated on this host")
	}
	return nil
}

// STUNAddr is the STUN listener's address once started; nil without one.
func (s *Service) STUNAddr() net.Addr {
	if c := s.stunConn(); c != nil {
		return c.LocalAddr()
	}
	return nil
}

func (s *Service) udpDuration() time.Duration {
	d, p := time.Duration(0), s.cfg.UDPInterval
	for i := 1; i < s.cfg.UDPCopies; i++ {
		d += p
		p *= 2
	}
	return d
}

// Run takes wake requests until ctx ends, then finishes the requests in
// flight (each bounded by its timeouts) and returns.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	cons, stun := s.consumer, s.stun
	s.mu.Unlock()
	if cons == nil {
		if err := s.Start(ctx); err != nil {
			return err
		}
		s.mu.Lock()
		cons, stun = s.consumer, s.stun
		s.mu.Unlock()
	}
	var wg sync.WaitGroup
	if stun != nil {
		wg.Go(func() { s.serveSTUN(stun) })
		defer func() {
			stun.Close()
			wg.Wait()
		}()
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(s.cfg.MaxConcurrent))
	if err != nil {
		return fmt.Errorf("consume %s: %w", s.names.WakeStream(), err)
	}
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()
	// Requests in flight run to their end on a context of their own, so
	// that a shutdown does not turn them into failures; resends planned
	// for later stop with ctx.
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	work := context.WithoutCancel(ctx)
	slots := make(chan struct{}, s.cfg.MaxConcurrent)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		msg, err := iter.Next()
		if err != nil {
			<-slots
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			s.logger.Warn("take a wake request", "err", err)
			continue
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			s.handle(work, msg)
		})
	}
}

// handle answers one wake request and acks it once its outcome is
// published.
func (s *Service) handle(ctx context.Context, msg jetstream.Msg) {
	ctx = natsbus.Extract(ctx, s.prop, msg.Headers())
	var req tasksv1.WakeRequest
	if len(msg.Data()) > maxWakeBytes || proto.Unmarshal(msg.Data(), &req) != nil || req.GetTenant() == "" || req.GetDeviceId() == "" {
		s.logger.Warn("drop a malformed wake request", "subject", msg.Subject(), "bytes", len(msg.Data()))
		_ = msg.Term()
		return
	}
	ctx, span := s.tracer.Start(ctx, "notifier.wake", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	received := s.now()
	r := s.wake(ctx, &req)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("fleetacs.tenant", req.GetTenant()), attribute.String("fleetacs.device_id", req.GetDeviceId()),
			attribute.String("fleetacs.wake_status", StatusName(r.status)), attribute.String("fleetacs.wake_transport", r.transport))
	}
	from := received
	if rt := req.GetRequestTime(); rt != nil && rt.AsTime().Before(received) {
		from = rt.AsTime()
	}
	latency := s.now().Sub(from)
	s.metrics.record(ctx, r, latency)
	log := s.logger.Info
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT && r.status != tasksv1.WakeStatus_WAKE_STATUS_COALESCED {
		log = s.logger.Warn
	}
	log("connection request", "tenant", req.GetTenant(), "device_id", req.GetDeviceId(), "status", StatusName(r.status),
		"transport", r.transport, "detail", r.detail, "latency_ms", latency.Milliseconds(), "task_ids", req.GetTaskIds())
	var meta *jetstream.MsgMetadata
	if m, err := msg.Metadata(); err == nil {
		meta = m
	}
	if err := s.publish(ctx, &req, r, latency, eventID(s.names.WakeStream(), meta, received)); err != nil {
		s.logger.Warn("publish a connection request outcome", "tenant", req.GetTenant(), "device_id", req.GetDeviceId(), "err", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.Ack(); err != nil {
		s.logger.Warn("ack a wake request", "tenant", req.GetTenant(), "device_id", req.GetDeviceId(), "err", err)
	}
	switch r.status {
	case tasksv1.WakeStatus_WAKE_STATUS_SENT:
		s.followUp(ctx, &req, received, 1)
	case tasksv1.WakeStatus_WAKE_STATUS_COALESCED:
		// The request in flight may already have opened its session, and
		// that session claimed its tasks before this request's were
		// queued: unless the device informs after this request was asked
		// for, it is sent on its own.
		s.followUp(ctx, &req, from, 1)
	}
}

// followUp checks, ResendAfter after a connection request was sent at
// sent, that the device informed since; if not, it sends the request
// again (the resend-th time) and publishes that outcome too. A CPE that
// is in a session when the request arrives drops it (docs/protocol.md §8.1):
// an OSS that sets a value and reads it at once wakes the device while
// the first session is still closing.
func (s *Service) followUp(ctx context.Context, req *tasksv1.WakeRequest, sent time.Time, resend int) {
	if s.cfg.ResendAfter <= 0 || resend > s.cfg.Resends {
		return
	}
	if s.followUps.Add(1) > maxFollowUps {
		s.followUps.Add(-1)
		return
	}
	s.mu.Lock()
	run := s.runCtx
	s.mu.Unlock()
	s.afterFunc(s.cfg.ResendAfter, func() {
		defer s.followUps.Add(-1)
		if run == nil || run.Err() != nil {
			return
		}
		ref := deviceRef{req.GetTenant(), req.GetDeviceId()}
		t, err := s.targets.Target(ctx, ref.tenant, ref.device)
		if err != nil || informedSince(t.LastInform, sent) {
			// Looked up in vain, or informed since: nothing to add.
			return
		}
		if !s.adm.begin(ref) {
			// Another request is in flight (a slow CPE answering the one
			// this request was coalesced with): look again once it had
			// its time, as one of the resends.
			s.followUp(ctx, req, sent, resend+1)
			return
		}
		at := s.now()
		r := s.send(ctx, t)
		s.adm.done(ref, r.status == tasksv1.WakeStatus_WAKE_STATUS_SENT)
		r.detail = fmt.Sprintf("sent again (%d): no Inform %s after the last one; %s", resend, s.cfg.ResendAfter, r.detail)
		latency := s.now().Sub(at)
		s.metrics.record(ctx, r, latency)
		s.logger.Info("connection request sent again", "tenant", ref.tenant, "device_id", ref.device, "status", StatusName(r.status), "detail", r.detail)
		if err := s.publish(ctx, req, r, latency, eventID(s.names.WakeStream(), nil, at)); err != nil {
			s.logger.Warn("publish a connection request outcome", "tenant", ref.tenant, "device_id", ref.device, "err", err)
		}
		if r.status == tasksv1.WakeStatus_WAKE_STATUS_SENT {
			s.followUp(ctx, req, at, resend+1)
		}
	})
}

// publish sends the outcome event, with the wake request's trace context.
func (s *Service) publish(ctx context.Context, req *tasksv1.WakeRequest, r result, latency time.Duration, id string) error {
	kind := "connection_request." + StatusName(r.status)
	ev := &eventsv1.Event{
		Id: id, Tenant: req.GetTenant(), DeviceId: req.GetDeviceId(), Time: timestamppb.New(s.now()), Kind: kind,
		Payload: &eventsv1.Event_ConnectionRequest{ConnectionRequest: &eventsv1.ConnectionRequestOutcome{
			Status: r.status, Detail: r.detail, TaskIds: req.GetTaskIds(), Transport: r.transport,
			LatencyMs: uint32(min(latency.Milliseconds(), 1<<32-1)),
		}},
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return err
	}
	m := nats.NewMsg(s.names.Event(req.GetTenant(), kind, req.GetDeviceId()))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, id)
	natsbus.Inject(ctx, s.prop, m)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = s.js.PublishMsg(pctx, m)
	return err
}

// crockford is the base32 alphabet of event ids.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// eventID is a 26-character time-ordered id (48 bits of milliseconds, 80
// bits more), derived from the wake message's stream and sequence: a
// redelivered request publishes under the same id, which JetStream's
// de-duplication drops.
func eventID(stream string, meta *jetstream.MsgMetadata, now time.Time) string {
	var raw [16]byte
	t := now
	if meta != nil {
		t = meta.Timestamp
		h := sha256.New()
		fmt.Fprintf(h, "%s/%d", stream, meta.Sequence.Stream)
		copy(raw[6:], h.Sum(nil))
	} else {
		_, _ = rand.Read(raw[6:])
	}
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(raw[:6], ms[2:])
	// 128 bits as 26 base32 digits, the first holding 3 bits.
	var b strings.Builder
	hi, lo := binary.BigEndian.Uint64(raw[:8]), binary.BigEndian.Uint64(raw[8:])
	for i := 25; i >= 0; i-- {
		shift := uint(i * 5)
		var v uint64
		switch {
		case shift >= 64:
			v = hi >> (shift - 64)
		case shift+5 <= 64:
			v = lo >> shift
			if shift > 0 {
				v |= hi << (64 - shift)
			}
		default:
			v = lo>>shift | hi<<(64-shift)
		}
		b.WriteByte(crockford[v&31])
	}
	return b.String()
}

// serveSTUN answers Binding Requests until conn closes. One goroutine and
// one buffer: a flood costs CPU, not memory.
func (s *Service) serveSTUN(conn *net.UDPConn) {
	stop := s.bindings.startWriter()
	defer stop()
	buf := make([]byte, stunMaxPacket+1)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		out := s.stunPacket(buf[:n], src)
		if out != nil {
			_, _ = conn.WriteToUDPAddrPort(out, src)
		}
	}
}

// stunPacket handles one datagram and returns the answer, nil for none.
func (s *Service) stunPacket(b []byte, src netip.AddrPort) []byte {
	req, err := parseSTUN(b)
	if err != nil {
		s.metrics.stunDropped.Add(context.Background(), 1)
		return nil
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if req.connReq {
		if req.username == "" {
			return stunUnauthorized(req)
		}
		if !s.bindings.learn(req.username, src) {
			s.metrics.stunDropped.Add(context.Background(), 1)
		} else if req.bindingChange {
			s.logger.Debug("STUN binding changed", "stun_user", req.username, "addr", src.String())
		}
	}
	return stunResponse(req, src)
}
