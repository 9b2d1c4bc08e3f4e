package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Simulator is a fleet of simulated CPEs. New builds it without side
// effects; Run drives it once.
type Simulator struct {
	cfg      Config
	version  cwmp.Version
	target   *target
	template *tree
	devices  []*Device
	client   *client
	sched    *scheduler
	stats    *stats
	cr       *crServer
	udpCR    *udpConnReq
	// irs spares decoding the ACS's InformResponses again.
	irs irCache

	// budget is the number of sessions left to start.
	budget atomic.Int64
	ran    atomic.Bool
	// started is when Run began (Unix nanoseconds), for Snapshot.
	started atomic.Int64

	rngMu sync.Mutex
	rng   *rand.Rand

	fileOnce sync.Once
	files    *http.Client

	// checkReachable, set by Run when Config.GiveUp is positive, ends the
	// run when the ACS is unreachable.
	checkReachable func()
}

// Run builds a simulator from cfg and runs it until the load it describes
// is done, ctx ends or Duration passes.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	s, err := New(cfg)
	if err != nil {
		return Summary{}, err
	}
	return s.Run(ctx)
}

// New validates cfg (after applying defaults), loads the data model and
// creates the devices. It opens no socket and starts no goroutine.
func New(cfg Config) (*Simulator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new simulator: %w", err)
	}
	prof, err := loadProfile(cfg.Model, cfg.Tables, cfg.Diagnostics)
	if err != nil {
		return nil, fmt.Errorf("new simulator: %w", err)
	}
	t, _ := parseTarget(cfg.URL)
	ver, _ := cwmp.ParseVersion(cfg.CWMPVersion)
	ts := &templateSettings{acsURL: cfg.URL, periodicSeconds: uint32(max(cfg.Interval/time.Second, 1)),
		rootVersion: rootVersion(prof.model.Name)}
	if cfg.Gzip {
		ts.compression = "GZIP"
	}
	tmpl, err := buildTree(prof, ts)
	if err != nil {
		return nil, fmt.Errorf("new simulator: %w", err)
	}
	s := &Simulator{
		cfg:      cfg,
		version:  ver,
		target:   t,
		template: tmpl,
		client:   newClient(&cfg),
		stats:    newStats(),
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
	}
	s.sched = newScheduler(s.retryDelay)
	now := time.Now()
	vendors := makeVendors(cfg, prof.model.Root)
	s.devices = make([]*Device, cfg.Devices)
	for i := range s.devices {
		s.devices[i] = s.newDevice(i, vendors, now)
	}
	return s, nil
}

// rootVersion is RootDataModelVersion from a model name: "Device:2.17" ->
// "2.17".
func rootVersion(model string) string {
	_, v, _ := strings.Cut(model, ":")
	return v
}

// vendor is one make of device in the simulated fleet.
type vendor struct {
	manufacturer, oui string
	classes           []string
}

// makeVendors derives the fleet's vendors from the seed: a fleet has a
// few makes, each with a few product classes.
func makeVendors(cfg Config, root string) []vendor {
	classes := [][]string{{"HGW-AX3000", "HGW-AX1800"}, {"ONT-G2110"}, {"EXT-MESH6", "HGW-AC1200"}}
	if root == "InternetGatewayDevice." {
		classes = [][]string{{"ADSL-N300", "VDSL-AC1200"}, {"GPON-HG8245"}, {"VDSL-AX1800"}}
	}
	var out []vendor
	for k := range 3 {
		h := splitmix(cfg.Seed*3 + uint64(k))
		v := vendor{
			manufacturer: "FleetSim Vendor " + string(rune('A'+k)),
			// Clear the group bit of the first octet: an OUI is a unicast
			// MAC prefix.
			oui:     fmt.Sprintf("%06X", (h&0xFFFFFF)&^0x010000),
			classes: classes[k],
		}
		if cfg.OUI != "" {
			v.oui = cfg.OUI
		}
		if cfg.Manufacturer != "" {
			v.manufacturer = cfg.Manufacturer
		}
		if cfg.ProductClass != "" {
			v.classes = []string{cfg.ProductClass}
		}
		out = append(out, v)
	}
	return out
}

// splitmix is SplitMix64, a cheap well-mixed hash for identities.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (s *Simulator) newDevice(i int, vendors []vendor, now time.Time) *Device {
	cfg := &s.cfg
	h := splitmix(cfg.Seed<<32 ^ uint64(i))
	v := vendors[h%uint64(len(vendors))]
	id := cwmp.DeviceID{
		Manufacturer: v.manufacturer,
		OUI:          v.oui,
		ProductClass: v.classes[(h>>8)%uint64(len(v.classes))],
		// The seed tag keeps fleets of different seeds apart; the index
		// makes serials unique within a fleet.
		SerialNumber: fmt.Sprintf("%s%04X%08d", cfg.SerialPrefix, splitmix(cfg.Seed)&0xFFFF, i),
	}
	expand := func(tmpl string) string {
		if !strings.Contains(tmpl, "{") {
			return tmpl
		}
		return strings.NewReplacer("{sn}", id.SerialNumber, "{oui}", id.OUI, "{pc}", id.ProductClass,
			"{i}", strconv.Itoa(i)).Replace(tmpl)
	}
	d := &Device{
		sim:       s,
		index:     i,
		id:        id,
		acsUser:   expand(cfg.Username),
		acsPass:   expand(cfg.Password),
		crUser:    expand(cfg.ConnReqUsername),
		crPass:    expand(cfg.ConnReqPassword),
		tree:      s.template,
		swVersion: cfg.SoftwareVersion,
		bootTime:  now,
	}
	d.sched.hidx = -1
	if cfg.SourceIPPerDevice {
		d.srcIP = net.IPv4(127, byte(1+i>>16), byte(i>>8), byte(i))
	}
	if !cfg.Known {
		d.addEvent(evBootstrap, "")
		d.addEvent(evBoot, "")
	} else if cfg.BootStorm {
		d.addEvent(evBoot, "")
	}
	return d
}

// Devices returns the simulated devices, in index order.
func (s *Simulator) Devices() []*Device { return s.devices }

// Snapshot summarises the run so far; it may be called while Run runs.
func (s *Simulator) Snapshot() Summary {
	var elapsed time.Duration
	if st := s.started.Load(); st != 0 {
		elapsed = time.Since(time.Unix(0, st))
	}
	return s.stats.summary(len(s.devices), s.cfg.Model, elapsed)
}

// scaled applies Config.TimeScale to a protocol-dictated delay.
func (s *Simulator) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * s.cfg.TimeScale)
}

// randFloat returns a uniform number in [0, 1) from the seeded source.
func (s *Simulator) randFloat() float64 {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64()
}

// backToBack reports the closed or open loop without periodic informs:
// each device informs again as soon as its session ends.
func (s *Simulator) backToBack() bool { return !s.cfg.BootStorm && !s.cfg.Periodic }

// Inform asks the device for a session with these events (for example a
// "4 VALUE CHANGE" a test wants delivered). It takes effect while Run runs.
func (d *Device) Inform(events ...cwmp.Event) {
	d.mu.Lock()
	for _, e := range events {
		d.addEvent(e.Code, e.CommandKey)
	}
	d.mu.Unlock()
	d.sim.sched.wake(d, time.Now())
}

// Run drives the devices until the load is done (Sessions reached, or in a
// boot storm every device booted and nothing is left to do), Duration
// passes or ctx ends, and returns the summary. Sessions in flight when the
// load ends are finished (ctx ending cancels them). A Simulator runs once.
func (s *Simulator) Run(ctx context.Context) (Summary, error) {
	if !s.ran.CompareAndSwap(false, true) {
		return Summary{}, errors.New("run simulator: already ran")
	}
	cfg := &s.cfg
	start := time.Now()
	s.started.Store(start.UnixNano())
	user0, sys0, cpuOK := processCPU()
	if cfg.Sessions > 0 {
		s.budget.Store(int64(cfg.Sessions))
	} else {
		s.budget.Store(math.MaxInt64)
	}
	if cfg.ConnReq != ConnReqOff {
		cr, err := s.startConnReq(ctx)
		if err != nil {
			return Summary{}, fmt.Errorf("run simulator: %w", err)
		}
		s.cr = cr
		defer cr.close()
	}
	if cfg.ConnReqUDP {
		u, err := s.startUDPConnReq(ctx)
		if err != nil {
			return Summary{}, fmt.Errorf("run simulator: %w", err)
		}
		s.udpCR = u
		defer u.close()
	}
	defer s.client.pool.closeAll()
	defer func() {
		for _, d := range s.devices {
			if d.idle != nil {
				d.idle.close()
				d.idle = nil
			}
		}
	}()

	for _, d := range s.devices {
		switch {
		case cfg.BootStorm:
			s.sched.wake(d, start)
			if cfg.Periodic {
				s.sched.setPeriodic(d, start.Add(s.jittered(cfg.Interval)))
			}
		case cfg.Periodic:
			phase := start.Add(time.Duration(s.randFloat() * float64(cfg.Interval)))
			if cfg.Known {
				s.sched.setPeriodic(d, phase)
			} else {
				s.sched.wake(d, phase)
				s.sched.setPeriodic(d, phase.Add(s.jittered(cfg.Interval)))
			}
		default:
			if cfg.Known {
				s.sched.setPeriodic(d, start)
			} else {
				s.sched.wake(d, start)
			}
		}
	}

	loadCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		loadCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	loadCtx, stopLoad := context.WithCancelCause(loadCtx)
	defer stopLoad(nil)
	if cfg.GiveUp > 0 {
		giveUpAt := start.Add(cfg.GiveUp)
		s.checkReachable = func() {
			if time.Now().Before(giveUpAt) || s.stats.answered.Load() {
				return
			}
			if first, ok := s.stats.firstError("connect"); ok {
				stopLoad(fmt.Errorf("%w: no answer from %s in %s: %s", ErrUnreachable, cfg.URL, cfg.GiveUp, first))
			}
		}
		t := time.AfterFunc(cfg.GiveUp, s.checkReachable)
		defer t.Stop()
	}
	s.dispatch(ctx, loadCtx)
	elapsed := time.Since(start)
	sum := s.stats.summary(len(s.devices), cfg.Model, elapsed)
	if user1, sys1, ok := processCPU(); ok && cpuOK {
		sum.setCPU(user1-user0, sys1-sys0)
	}
	if cause := context.Cause(loadCtx); errors.Is(cause, ErrUnreachable) {
		return sum, cause
	}
	return sum, nil
}

// ErrUnreachable ends a run in which the ACS answered nothing for
// Config.GiveUp while connecting to it failed.
var ErrUnreachable = errors.New("ACS unreachable")

// jittered returns an interval varied by ±Jitter.
func (s *Simulator) jittered(d time.Duration) time.Duration {
	j := s.cfg.Jitter
	if j == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - j + 2*j*s.randFloat()))
}

// dispatch hands due devices to workers until the load is done. Sessions
// run under ctx; loadCtx ending stops new work.
func (s *Simulator) dispatch(ctx, loadCtx context.Context) {
	cfg := &s.cfg
	var wg sync.WaitGroup
	openLoop := cfg.Rate > 0
	var jobs chan job
	var sem chan struct{}
	if openLoop {
		sem = make(chan struct{}, cfg.Concurrency)
	} else {
		jobs = make(chan job)
		for range cfg.Concurrency {
			wg.Go(func() {
				for j := range jobs {
					s.work(ctx, j.d, j.intended)
				}
			})
		}
	}
	var slot time.Time
	var slotGap time.Duration
	if openLoop {
		slot = time.Now()
		slotGap = time.Duration(float64(time.Second) / cfg.Rate)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	wait := func(d time.Duration) bool {
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-s.sched.kick:
			timer.Stop()
			return true
		case <-loadCtx.Done():
			timer.Stop()
			return false
		}
	}
	for loadCtx.Err() == nil && s.budget.Load() > 0 {
		now := time.Now()
		d, next := s.sched.popDue(now)
		if d == nil {
			if next.IsZero() {
				if s.sched.idle() && s.cr == nil && s.udpCR == nil && !cfg.Periodic {
					break // nothing left to do and nothing can wake a device
				}
				if !wait(time.Hour) {
					break
				}
				continue
			}
			if !wait(next.Sub(now)) {
				break
			}
			continue
		}
		var intended time.Time
		if cfg.Periodic {
			intended = d.sched.dueAt()
		}
		if openLoop {
			// Sleep only for gaps above a millisecond: timers overshoot by
			// tens of microseconds, and sleeping before every one of
			// thousands of sessions a second would fall behind the rate.
			// Sessions that start a little early keep their slot as
			// intended time; runSession never counts negative latency.
			if slot.Sub(now) > time.Millisecond && !sleepCtx(loadCtx, slot.Sub(now)) {
				s.sched.release(d, releaseInfo{})
				break
			}
			intended = slot
			slot = slot.Add(slotGap)
			select {
			case sem <- struct{}{}:
			case <-loadCtx.Done():
				s.sched.release(d, releaseInfo{})
				continue
			}
			wg.Go(func() {
				defer func() { <-sem }()
				s.work(ctx, d, intended)
			})
			continue
		}
		select {
		case jobs <- job{d, intended}:
		case <-loadCtx.Done():
			s.sched.release(d, releaseInfo{})
		}
	}
	if jobs != nil {
		close(jobs)
	}
	wg.Wait()
}

type job struct {
	d        *Device
	intended time.Time
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// work gives a device a worker's attention: due wakeups run, a due
// periodic inform queues its event, and a session runs when events are
// pending and the back-off allows.
func (s *Simulator) work(ctx context.Context, d *Device, intended time.Time) {
	cfg := &s.cfg
	now := time.Now()
	wakes, periodic, firedAt, mayRun := s.sched.take(d, now)
	d.mu.Lock()
	for _, w := range wakes {
		w.fn(now)
	}
	if periodic {
		d.addEvent(evPeriodic, "")
	}
	hasEvents := len(d.events) > 0
	d.mu.Unlock()

	var rel releaseInfo
	if periodic && cfg.Periodic {
		next := firedAt.Add(s.jittered(cfg.Interval))
		if next.Before(now) {
			next = now.Add(s.jittered(cfg.Interval))
		}
		rel.periodicAt = next
	}
	if !hasEvents {
		s.sched.release(d, rel)
		return
	}
	if !mayRun || ctx.Err() != nil {
		rel.pending, rel.wantAt = true, now
		s.sched.release(d, rel)
		return
	}
	if s.budget.Add(-1) < 0 {
		s.sched.release(d, rel)
		s.sched.signal()
		return
	}
	report := s.runSession(ctx, d, intended)

	d.mu.Lock()
	after := d.after
	d.after = nil
	if report.OK {
		d.retryCount = 0
	} else if report.Kind != "canceled" {
		d.retryCount++
		// A connection request's event is not retried (docs/protocol.md §6.1).
		d.removeEvent(evConnReq, "")
	}
	d.mu.Unlock()
	end := time.Now()
	for _, fn := range after {
		fn(end)
	}
	d.mu.Lock()
	rel.pending = len(d.events) > 0
	d.mu.Unlock()
	rel.wantAt = end
	switch {
	case report.OK:
		rel.ok = true
		if rel.pending {
			// Events left after a good session wait for the device's own
			// requests the ACS held off: try again after a pause rather
			// than at once.
			rel.wantAt = end.Add(s.scaled(cfg.RetryMinWait))
		}
	case report.Kind == "canceled":
		rel.pending = true
	default:
		rel.failed = true
		var serr *sessionError
		if errors.As(report.Err, &serr) && serr.retryAfter > 0 {
			rel.retryAfter = serr.retryAfter
		}
		s.stats.retries.Add(1)
	}
	if s.backToBack() {
		rel.periodicAt = end
	}
	if cfg.OnSession != nil {
		cfg.OnSession(report)
	}
	if report.Kind == "connect" && s.checkReachable != nil {
		s.checkReachable()
	}
	s.sched.release(d, rel)
}

// retryDelay is the back-off after a device's n-th consecutive failure:
// the 503's Retry-After when it gave one (capped by MaxRetryAfter), else
// the CWMP retry policy; both scaled by TimeScale.
func (s *Simulator) retryDelay(n int, retryAfter time.Duration) time.Duration {
	cfg := &s.cfg
	var d time.Duration
	if retryAfter > 0 {
		d = retryAfter
	} else {
		d = retryWait(n, cfg.RetryMinWait, cfg.RetryMultiplier, s.randFloat())
	}
	d = s.scaled(d)
	if retryAfter > 0 && cfg.MaxRetryAfter > 0 && d > cfg.MaxRetryAfter {
		d = cfg.MaxRetryAfter
	}
	return d
}

// retryWait is the wait before retry n (1-based) of a failed session
// (docs/protocol.md §4.4): uniform in [m·k^(n-1), m·k^n], the window fixed from
// n = 10 on.
func retryWait(n int, m time.Duration, k float64, u float64) time.Duration {
	n = min(max(n, 1), 10)
	lo := float64(m) * math.Pow(k, float64(n-1))
	hi := float64(m) * math.Pow(k, float64(n))
	return time.Duration(lo + u*(hi-lo))
}
