package notifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"sync"
	"time"
)

// The STUN bindings (docs/protocol.md §8.2): which public
// address and port a CPE's UDP connection-request port shows, learnt from
// its Binding Requests. Every replica of the notifier answers STUN behind
// one Service, and any replica may take the wake request that needs the
// binding, so with a BindingStore the bindings are shared (Redis), with
// this process's table in front as a bounded cache; without one the table
// is all there is (one process: the all-in-one binary without Redis).

// BindingStore shares STUN bindings between notifier replicas (Redis in
// production: RedisBindings). Ids are opaque (a digest of the STUN user
// name and the public IP address, bindingID); values are addresses.
type BindingStore interface {
	// Put records each binding for ttl.
	Put(ctx context.Context, batch []StoredBinding, ttl time.Duration) error
	// Get returns the binding under id and how long it has left; ok is
	// false when there is none. A stored value that is no binding (too
	// long, unparsable, without expiry) is an error wrapping
	// ErrBadBinding.
	Get(ctx context.Context, id string) (addr netip.AddrPort, left time.Duration, ok bool, err error)
}

// StoredBinding is one binding as a BindingStore keeps it.
type StoredBinding struct {
	ID   string
	Addr netip.AddrPort
}

// ErrBadBinding marks a stored binding that is refused: not what a
// notifier writes, so forged or corrupted.
var ErrBadBinding = errors.New("bad STUN binding")

// maxBindingValue bounds a stored binding's value: the longest IPv6
// address with a zone, brackets and a port fits.
const maxBindingValue = 64

// bindingID is the identity a binding is kept under: the STUN user name
// and the public IP address the Binding Request came from. Anyone may send
// a Binding Request naming any user, but only from an address of their
// own, so a forged request cannot displace the binding of a device that
// informs from elsewhere; and the lookup is by the address the device
// informs from. The digest bounds the key's length and keeps user names
// out of Redis.
func bindingID(user string, ip netip.Addr) string {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(bindingIP(ip).String()))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// bindingIP is the form of an address bindings compare: IPv4-mapped IPv6
// addresses as IPv4, no zone.
func bindingIP(ip netip.Addr) netip.Addr { return ip.Unmap().WithZone("") }

// Timing of the shared bindings.
const (
	// bindingCacheFor is how long a lookup trusts this process's entry
	// before asking the store again: a CPE whose NAT mapping changed may
	// have told another replica since.
	bindingCacheFor = 10 * time.Second
	// bindingQueue bounds the writes waiting for the store; bindingBatch
	// is the most one round trip carries.
	bindingQueue = 4096
	bindingBatch = 256
	// bindingStoreTimeout bounds one call to the store.
	bindingStoreTimeout = 2 * time.Second
)

// bindings is the process's table of STUN bindings, by bindingID, kept
// for a TTL and bounded in number: when full, expired entries are swept
// (at most once a second) and new ids are refused until there is room, so
// a flood of names cannot grow it. Only bindings the table admits are
// written to the store, so the store holds at most the replicas times the
// bound. Writes go through a bounded queue to one writer goroutine, so
// that the STUN socket's reader never waits for Redis.
type bindings struct {
	mu        sync.Mutex
	m         map[string]binding
	max       int
	ttl       time.Duration
	now       func() time.Time
	lastSweep time.Time

	store  BindingStore
	writes chan StoredBinding
	// failed counts a failed store operation ("put", "get", "queue_full",
	// "refused").
	failed func(op string)
}

type binding struct {
	addr    netip.AddrPort
	expires time.Time
	// checked is when the CPE or the store last confirmed it; written
	// when this process last queued it for the store.
	checked, written time.Time
}

func newBindings(max int, ttl time.Duration, now func() time.Time, store BindingStore, failed func(string)) *bindings {
	b := &bindings{m: map[string]binding{}, max: max, ttl: ttl, now: now, store: store, failed: failed}
	if b.failed == nil {
		b.failed = func(string) {}
	}
	if store != nil {
		b.writes = make(chan StoredBinding, bindingQueue)
	}
	return b
}

// learn records that user's Binding Request came from ap; false when the
// table is full.
func (b *bindings) learn(user string, ap netip.AddrPort) bool {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	id := bindingID(user, ap.Addr())
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	old, ok := b.m[id]
	if !ok && !b.roomLocked(now) {
		return false
	}
	e := binding{addr: ap, expires: now.Add(b.ttl), checked: now}
	if ok && old.addr == ap {
		e.written = old.written
	}
	// A keep-alive from the same port refreshes the store a few times per
	// TTL rather than at every request.
	if b.store != nil && (e.written.IsZero() || now.Sub(e.written) >= b.ttl/4) {
		select {
		case b.writes <- StoredBinding{ID: id, Addr: ap}:
			e.written = now
		default:
			b.failed("queue_full")
		}
	}
	b.m[id] = e
	return true
}

// roomLocked reports whether a new id fits, sweeping expired entries when
// the table is full.
func (b *bindings) roomLocked(now time.Time) bool {
	if len(b.m) < b.max {
		return true
	}
	if now.Sub(b.lastSweep) >= time.Second {
		b.lastSweep = now
		for k, v := range b.m {
			if !now.Before(v.expires) {
				delete(b.m, k)
			}
		}
	}
	return len(b.m) < b.max
}

// lookup returns the fresh binding of user at ip (the address the device
// informs from): this process's entry while it is recent, else the
// store's. A stored binding that is malformed or names another address is
// refused. When the store fails, an unexpired entry of this process is
// used.
func (b *bindings) lookup(ctx context.Context, user string, ip netip.Addr) (netip.AddrPort, bool) {
	ip = bindingIP(ip)
	id := bindingID(user, ip)
	b.mu.Lock()
	e, ok := b.m[id]
	now := b.now()
	ok = ok && now.Before(e.expires)
	b.mu.Unlock()
	if ok && (b.store == nil || now.Sub(e.checked) < bindingCacheFor) {
		return e.addr, true
	}
	if b.store == nil {
		return netip.AddrPort{}, false
	}
	gctx, cancel := context.WithTimeout(ctx, bindingStoreTimeout)
	defer cancel()
	addr, left, found, err := b.store.Get(gctx, id)
	if err == nil && found && bindingIP(addr.Addr()) != ip {
		err = ErrBadBinding
	}
	switch {
	case errors.Is(err, ErrBadBinding):
		b.failed("refused")
		b.forget(id)
		return netip.AddrPort{}, false
	case err != nil:
		b.failed("get")
		return e.addr, ok
	case !found:
		b.forget(id)
		return netip.AddrPort{}, false
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	b.mu.Lock()
	defer b.mu.Unlock()
	now = b.now()
	cur, had := b.m[id]
	if had || b.roomLocked(now) {
		e := binding{addr: addr, expires: now.Add(min(left, b.ttl)), checked: now}
		if had && cur.addr == addr {
			e.written = cur.written
		}
		b.m[id] = e
	}
	return addr, true
}

func (b *bindings) forget(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, id)
}

func (b *bindings) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// startWriter starts the goroutine that puts queued bindings in the
// store; the function it returns stops it, after one last attempt at what
// is queued, and waits for it.
func (b *bindings) startWriter() (stop func()) {
	if b.store == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		batch := make([]StoredBinding, 0, bindingBatch)
		for {
			select {
			case w := <-b.writes:
				batch = append(batch[:0], w)
			case <-done:
				b.flush(batch[:0])
				return
			}
			b.flush(batch)
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// flush adds what else is queued to batch, up to bindingBatch, and puts it
// in one round trip.
func (b *bindings) flush(batch []StoredBinding) {
	for len(batch) < bindingBatch {
		select {
		case w := <-b.writes:
			batch = append(batch, w)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), bindingStoreTimeout)
	defer cancel()
	if err := b.store.Put(ctx, batch, b.ttl); err != nil {
		b.failed("put")
	}
}
