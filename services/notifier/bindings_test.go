package notifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

const testPrefix = "t:"

func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// replica is one notifier process: its own service, STUN socket and
// Redis connection, sharing the database with the others.
func replica(t *testing.T, ctx context.Context, rc *redis.Client, cfg Config, targets Targets, now func() time.Time) (*Service, net.Addr) {
	t.Helper()
	cfg.STUNAddr = "127.0.0.1:0"
	s := newService(t, cfg, Deps{Targets: targets, Now: now, Bindings: NewRedisBindings(rc, testPrefix)})
	return s, startSTUNOnly(t, s, ctx)
}

// udpPeer is a UDP socket on loopback: a CPE's connection-request port.
func udpPeer(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// bind sends a TR-111 Binding Request for user from cpe to the STUN
// server and reads the answer.
func bind(t *testing.T, cpe *net.UDPConn, stun net.Addr, user string) {
	t.Helper()
	if _, err := cpe.WriteTo(bindingRequest(true, user, true, false), stun); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, _, err := cpe.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := mappedAddress(t, buf[:n], attrXORMappedAddress); got != cpe.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("mapped %v, want %v", got, cpe.LocalAddr())
	}
}

// receiveWake reads the UDP connection request's copies at cpe and checks
// that they come from the STUN socket at from, signed for user.
func receiveWake(t *testing.T, cpe *net.UDPConn, copies int, from net.Addr, user, pass string) {
	t.Helper()
	buf := make([]byte, 1500)
	ids := map[string]bool{}
	for range copies {
		n, src, err := cpe.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("UDP connection request: %v", err)
		}
		if src.Port() != uint16(from.(*net.UDPAddr).Port) {
			t.Fatalf("request from %v, want the STUN socket %v", src, from)
		}
		ids[checkUDPMessage(t, string(buf[:n]), user, pass)["id"]] = true
	}
	if len(ids) != 1 {
		t.Fatalf("copies carry ids %v, want one", ids)
	}
}

// A binding notifier A's STUN server learnt is used by notifier B for a
// UDP connection request, sent from B's STUN socket, signed.
func TestSharedBindingAcrossReplicas(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := redisClient(t)
	cfg := testConfig()
	targets := &fakeTargets{}
	a, stunA := replica(t, ctx, rc, cfg, targets, nil)
	b, stunB := replica(t, ctx, rc, cfg, targets, nil)

	cpe := udpPeer(t, "127.0.0.1")
	bind(t, cpe, stunA, "cr-dev1")
	if a.bindings.len() != 1 || b.bindings.len() != 0 {
		t.Fatalf("tables: A %d, B %d; want the binding learnt by A only", a.bindings.len(), b.bindings.len())
	}
	// The binding reaches Redis through A's writer, under its hash-tagged
	// key, with the binding's life.
	key := testPrefix + "stun:{" + bindingID("cr-dev1", netip.MustParseAddr("127.0.0.1")) + "}"
	testenv.WaitFor(t, 5*time.Second, func() error {
		if v, err := rc.Get(ctx, key).Result(); err != nil || v != cpe.LocalAddr().String() {
			return fmt.Errorf("%s = %q, %v", key, v, err)
		}
		return nil
	})
	if ttl := rc.PTTL(ctx, key).Val(); ttl <= 0 || ttl > cfg.STUNBindingTTL {
		t.Fatalf("PTTL %v, want at most %v", ttl, cfg.STUNBindingTTL)
	}
	targets.set("dev1", Target{Username: "cr-dev1", Password: "secret", HasCredentials: true, RemoteIP: "127.0.0.1"})
	r := b.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev1"})
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT || r.transport != "udp" {
		t.Fatalf("wake at B: %v %s %q", r.status, r.transport, r.detail)
	}
	receiveWake(t, cpe, cfg.UDPCopies, stunB, "cr-dev1", "secret")

	// Without the shared store, B would not have known it.
	alone := newService(t, cfg, Deps{Targets: targets})
	if r := alone.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev1"}); r.status != tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS {
		t.Fatalf("a notifier without the binding: %v %q", r.status, r.detail)
	}
}

// A binding lives for -notifier.stun-binding-ttl: in Redis (PX) and in
// each replica's cache.
func TestSharedBindingExpires(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := redisClient(t)
	clk := newClock()
	cfg := testConfig()
	cfg.STUNBindingTTL = 2 * time.Second
	targets := &fakeTargets{}
	targets.set("dev1", Target{Username: "cr-dev1", Password: "secret", HasCredentials: true, RemoteIP: "127.0.0.1"})
	a, stunA := replica(t, ctx, rc, cfg, targets, clk.Now)
	b, _ := replica(t, ctx, rc, cfg, targets, clk.Now)
	cpe := udpPeer(t, "127.0.0.1")
	bind(t, cpe, stunA, "cr-dev1")
	ip := netip.MustParseAddr("127.0.0.1")
	testenv.WaitFor(t, 5*time.Second, func() error {
		if _, ok := b.bindings.lookup(ctx, "cr-dev1", ip); !ok {
			return errors.New("B does not see the binding")
		}
		return nil
	})
	// Redis lets the key go after the TTL ...
	key := testPrefix + "stun:{" + bindingID("cr-dev1", ip) + "}"
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := rc.Exists(ctx, key).Val(); n != 0 {
			return fmt.Errorf("%s still there", key)
		}
		return nil
	})
	// ... and once the TTL has passed on their clock, neither replica
	// uses its cached copy.
	clk.Add(cfg.STUNBindingTTL)
	for name, s := range map[string]*Service{"A": a, "B": b} {
		if ap, ok := s.bindings.lookup(ctx, "cr-dev1", ip); ok {
			t.Fatalf("%s uses the expired binding %v", name, ap)
		}
		if r := s.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev1"}); r.status != tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS {
			t.Fatalf("wake at %s after expiry: %v %q", name, r.status, r.detail)
		}
	}
}

// A Binding Request naming the device's user from another address neither
// takes the device's connection requests nor displaces its binding.
func TestSharedBindingForgedRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := redisClient(t)
	cfg := testConfig()
	targets := &fakeTargets{}
	targets.set("dev1", Target{Username: "cr-dev1", Password: "secret", HasCredentials: true, RemoteIP: "127.0.0.1"})
	a, stunA := replica(t, ctx, rc, cfg, targets, nil)
	b, stunB := replica(t, ctx, rc, cfg, targets, nil)
	cpe := udpPeer(t, "127.0.0.1")
	attacker := udpPeer(t, "127.0.0.2")
	bind(t, cpe, stunA, "cr-dev1")
	bind(t, attacker, stunB, "cr-dev1")
	bind(t, attacker, stunA, "cr-dev1")
	testenv.WaitFor(t, 5*time.Second, func() error {
		if n := rc.DBSize(ctx).Val(); n != 2 {
			return fmt.Errorf("%d keys, want the device's and the attacker's", n)
		}
		return nil
	})
	for name, s := range map[string]*Service{"A": a, "B": b} {
		r := s.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev1"})
		if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
			t.Fatalf("wake at %s: %v %q", name, r.status, r.detail)
		}
		from := stunA
		if name == "B" {
			from = stunB
		}
		// Every copy reaches the device, so none went to the attacker.
		receiveWake(t, cpe, cfg.UDPCopies, from, "cr-dev1", "secret")
	}
}

// What Redis holds is not trusted: a value too long, not an address, for
// another address than the key's, or without expiry is refused, and the
// device is then woken as if there were no binding.
func TestSharedBindingRefusesBadValues(t *testing.T) {
	ctx := context.Background()
	rc := redisClient(t)
	store := NewRedisBindings(rc, testPrefix)
	cfg := testConfig()
	targets := &fakeTargets{}
	targets.set("dev1", Target{Username: "cr-dev1", Password: "secret", HasCredentials: true, RemoteIP: "192.0.2.10"})
	id := bindingID("cr-dev1", netip.MustParseAddr("192.0.2.10"))
	key := testPrefix + "stun:{" + id + "}"
	for _, c := range []struct {
		name, value string
		ttl         time.Duration
		storeErr    bool // the adapter refuses it; else the table does
	}{
		{"oversized", "192.0.2.10:4000" + strings.Repeat(" ", 1<<20), time.Minute, true},
		{"not an address", "<script>", time.Minute, true},
		{"port zero", "192.0.2.10:0", time.Minute, true},
		{"no expiry", "192.0.2.10:4000", 0, true},
		{"another address", "192.0.2.66:4000", time.Minute, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := rc.Set(ctx, key, c.value, c.ttl).Err(); err != nil {
				t.Fatal(err)
			}
			_, _, ok, err := store.Get(ctx, id)
			if c.storeErr != errors.Is(err, ErrBadBinding) || (c.storeErr && ok) {
				t.Fatalf("Get: ok %v, %v", ok, err)
			}
			s := newService(t, cfg, Deps{Targets: targets, Bindings: store})
			if ap, ok := s.bindings.lookup(ctx, "cr-dev1", netip.MustParseAddr("192.0.2.10")); ok {
				t.Fatalf("binding %v used", ap)
			}
			r := s.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev1"})
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS {
				t.Fatalf("wake: %v %q", r.status, r.detail)
			}
		})
	}
	// The adapter writes nothing it would refuse to read.
	if err := store.Put(ctx, []StoredBinding{{ID: id, Addr: netip.AddrPort{}}}, time.Minute); !errors.Is(err, ErrBadBinding) {
		t.Fatalf("Put of no address: %v", err)
	}
}

// A flood of user names reaches Redis only as far as the table admits
// them: the store holds at most -notifier.stun-max-bindings per replica.
func TestSharedBindingFloodBounded(t *testing.T) {
	rc := redisClient(t)
	cfg := testConfig()
	cfg.STUNMaxBindings = 100
	s := newService(t, cfg, Deps{Bindings: NewRedisBindings(rc, testPrefix)})
	stop := s.bindings.startWriter()
	src := netip.MustParseAddrPort("192.0.2.7:4000")
	for range 5000 {
		s.stunPacket(bindingRequest(true, "u"+randomHex(8), true, false), src)
	}
	stop()
	if n := rc.DBSize(context.Background()).Val(); n != 100 {
		t.Fatalf("%d keys in Redis, want the 100 the table admitted", n)
	}
}
