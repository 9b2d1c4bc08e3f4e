package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// Orphaned leases (issue 8 item 8): an acquire that failed at the gateway
// but reached the store.

// lostReplyLeases applies an Acquire and then reports it failed, as a
// store whose reply was lost does; its releases fail while releaseDown is
// set.
type lostReplyLeases struct {
	*affinity.MemoryLeases
	loseNext    atomic.Bool
	releaseDown atomic.Bool
	releases    atomic.Int32
}

func (l *lostReplyLeases) Acquire(ctx context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) (Lease, error) {
	lease, err := l.MemoryLeases.Acquire(ctx, tenant, deviceKey, sessionID, ttl)
	if l.loseNext.CompareAndSwap(true, false) {
		return Lease{}, errors.New("redis: i/o timeout")
	}
	return lease, err
}

func (l *lostReplyLeases) Release(ctx context.Context, tenant, deviceKey, sessionID string) error {
	l.releases.Add(1)
	if l.releaseDown.Load() {
		return errors.New("redis: i/o timeout")
	}
	return l.MemoryLeases.Release(ctx, tenant, deviceKey, sessionID)
}

func withLostReply(l *lostReplyLeases) func(*Deps) {
	return func(d *Deps) {
		l.MemoryLeases = d.Leases.(*affinity.MemoryLeases)
		d.Leases = l
	}
}

// TestOrphanedLeaseReleased: the lease of a session that never started is
// released in the background.
func TestOrphanedLeaseReleased(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	leases := &lostReplyLeases{}
	leases.loseNext.Store(true)
	h := startGateway(t, anonymousConfig(), func(d *Deps) {
		withLostReply(leases)(d)
		withMetrics(reader)(d)
	})
	a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC"))
	if a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Inform with the lease store failing: %d, want 503", a.StatusCode)
	}
	waitFor(t, "orphaned lease released", func() bool { _, held := h.holder(testDeviceKey("SN1")); return !held })
	if got := counterValue(t, reader, "fleetacs.gateway.leases.orphans", attribute.String("outcome", "queued")); got != 1 {
		t.Fatalf("leases.orphans{outcome=queued} = %d, want 1", got)
	}
}

// TestOrphanedLeaseNotATakeover: while the orphaned lease still stands
// (its release failing too), the device's next session takes it over
// without counting a takeover: the orphan's session never started.
func TestOrphanedLeaseNotATakeover(t *testing.T) {
	leases := &lostReplyLeases{}
	leases.loseNext.Store(true)
	leases.releaseDown.Store(true)
	h := startGateway(t, anonymousConfig(), withLostReply(leases))
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC")); a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Inform with the lease store failing: %d, want 503", a.StatusCode)
	}
	orphan, held := h.holder(testDeviceKey("SN1"))
	if !held {
		t.Fatal("the lost acquire left no lease: the test reproduces nothing")
	}
	waitFor(t, "release attempted", func() bool { return leases.releases.Load() > 0 })
	a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC"))
	if a.StatusCode != http.StatusOK {
		t.Fatalf("next Inform: %d", a.StatusCode)
	}
	seen := h.worker.seen()
	if len(seen) != 1 || seen[0].Lease == nil || seen[0].Lease.Superseded != "" {
		t.Fatalf("next session's lease %+v, want no superseded session (the orphan %s never started)", seen[0].Lease, orphan)
	}
	if ab := h.worker.abandoned(); len(ab) != 0 {
		t.Fatalf("abandons %+v for a session that never started", ab)
	}
	if strings.Contains(h.logs.String(), "session took over the device lease") {
		t.Fatal("takeover logged for a session that never started")
	}
}

// stallProxy is a TCP proxy to Redis that holds back what clients send
// while stalled, as a stalled Redis does (a slow command, a fork, a
// failover): requests sent meanwhile are served when the stall ends, after
// their clients gave up waiting for the reply.
type stallProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	stalled chan struct{} // non-nil while stalled; closed by resume
	held    int
	conns   []net.Conn
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.resume()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	return p
}

func (p *stallProxy) addr() string { return p.ln.Addr().String() }

func (p *stallProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *stallProxy) pipe(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(client, server)
		_ = client.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			p.gate(n)
			if _, werr := server.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	// The client hung up: what it sent is delivered all the same, and
	// Redis serves it before it sees the end of the stream.
	_ = server.(*net.TCPConn).CloseWrite()
}

func (p *stallProxy) gate(n int) {
	p.mu.Lock()
	ch := p.stalled
	if ch != nil {
		p.held += n
	}
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

func (p *stallProxy) heldBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// TestOrphanedLeaseAfterRedisStall reproduces the issue against a real
// Redis: the gateway's acquire times out during a stall, Redis applies it
// when the stall ends, and the lease must not stay behind (before the fix
// it stayed for the whole lease TTL) nor make the device's next session a
// takeover.
func TestOrphanedLeaseAfterRedisStall(t *testing.T) {
	addr, db := testenv.RedisDB(t)
	direct := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = direct.Close() })
	proxy := startStallProxy(t, addr)
	viaProxy := redis.NewClient(&redis.Options{
		Addr: proxy.addr(), DB: db, DisableIdentity: true, Protocol: 2,
		ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		MaxRetries: -1, PoolSize: 1,
	})
	t.Cleanup(func() { _ = viaProxy.Close() })
	prefix := "fleetacs:" + testenv.UniqueName(t) + ":"
	var gwLeases *affinity.RedisLeases
	h := startGateway(t, anonymousConfig(), func(d *Deps) {
		gwLeases = affinity.NewRedis(viaProxy, prefix, d.Now).Leases()
		d.Leases = gwLeases
	})
	observer := affinity.NewRedis(direct, prefix, h.clock.Now).Leases()
	ctx := t.Context()
	// Warm up: a pooled connection to Redis, and the lease scripts in
	// Redis's script cache (EVALSHA must apply, not answer NOSCRIPT, once
	// the stall ends).
	if _, err := gwLeases.Acquire(ctx, "default", "WARMUP", "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := gwLeases.Release(ctx, "default", "WARMUP", "w"); err != nil {
		t.Fatal(err)
	}

	proxy.stall()
	a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC"))
	if a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("Inform during the stall: %d, want 503", a.StatusCode)
	}
	if proxy.heldBytes() == 0 {
		t.Fatal("the acquire never reached the proxy")
	}
	proxy.resume()
	// The acquire the gateway gave up on is applied now: the device's
	// token counter (package affinity's key schema) appears.
	tokenKey := prefix + "token:{7:default:" + strconv.Itoa(len(testDeviceKey("SN1"))) + ":" + testDeviceKey("SN1") + "}"
	waitFor(t, "the timed-out acquire applied by Redis", func() bool {
		n, err := direct.Exists(ctx, tokenKey).Result()
		return err == nil && n == 1
	})
	waitFor(t, "orphaned lease released", func() bool {
		_, held, err := observer.Holder(ctx, "default", testDeviceKey("SN1"))
		return err == nil && !held
	})
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC")); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform after the stall: %d", a.StatusCode)
	}
	if seen := h.worker.seen(); len(seen) != 1 || seen[0].Lease == nil || seen[0].Lease.Superseded != "" {
		t.Fatalf("session after the stall: %+v, want one exchange and no takeover", seen)
	}
}
