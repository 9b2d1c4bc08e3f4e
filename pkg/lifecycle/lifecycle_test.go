package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder notes the events of a group's members in order.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// service records its start and stop; running is told when it runs.
func (r *recorder) service(name string, startErr error, running chan<- string) Service {
	return Funcs{
		StartFunc: func(context.Context) error {
			r.note("start %s", name)
			return startErr
		},
		RunFunc: func(ctx context.Context) error {
			if running != nil {
				running <- name
			}
			<-ctx.Done()
			r.note("stop %s", name)
			return nil
		},
	}
}

func TestGroupStartsInOrderAndStopsInReverse(t *testing.T) {
	var rec recorder
	h := NewHealth()
	allStarted := make(chan struct{})
	g := NewGroup(GroupOptions{
		StopTimeout: time.Second, Health: h,
		OnReady: func(name string, ready bool) { rec.note("ready %s %v", name, ready) },
		OnStarted: func() {
			if ok, not := h.Ready(); !ok {
				t.Errorf("OnStarted while %v not ready", not)
			}
			rec.note("all started")
			close(allStarted)
		},
	})
	g.Add("admin", rec.service("admin", nil, nil))
	g.Add("store", rec.service("store", nil, nil))
	g.Add("worker", rec.service("worker", nil, nil), "store")
	g.Add("gateway", rec.service("gateway", nil, nil), "store", "worker")
	if ok, _ := h.Ready(); ok {
		t.Fatal("ready before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	<-allStarted
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{
		"start admin", "ready admin true",
		"start store", "ready store true",
		"start worker", "ready worker true",
		"start gateway", "ready gateway true",
		"all started",
		// Not ready everywhere before anything stops.
		"ready admin false", "ready store false", "ready worker false", "ready gateway false",
		"stop gateway", "stop worker", "stop store", "stop admin",
	}
	if got := rec.all(); !slices.Equal(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
	if ok, _ := h.Ready(); ok {
		t.Fatal("still ready after Run")
	}
}

// A member that cannot start ends the start with one error that names it;
// the members after it never start and those before it stop in reverse.
func TestGroupStartFailure(t *testing.T) {
	var rec recorder
	boom := errors.New("boom")
	g := NewGroup(GroupOptions{StopTimeout: time.Second, OnStarted: func() { t.Error("OnStarted after a failed start") }})
	g.Add("admin", rec.service("admin", nil, nil))
	g.Add("store", rec.service("store", nil, nil))
	g.Add("gateway", rec.service("gateway", boom, nil), "store")
	g.Add("later", rec.service("later", nil, nil), "gateway")
	err := g.Run(context.Background())
	var se *StartError
	if !errors.As(err, &se) || se.Service != "gateway" || !errors.Is(err, boom) || err.Error() != "start gateway: boom" {
		t.Fatalf("want one StartError for gateway, got %v", err)
	}
	want := []string{"start admin", "start store", "start gateway", "stop store", "stop admin"}
	if got := rec.all(); !slices.Equal(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

// A shutdown asked for while a member starts interrupts that start; it is
// not an error, and what started stops.
func TestGroupShutdownDuringStart(t *testing.T) {
	var rec recorder
	ctx, cancel := context.WithCancel(context.Background())
	g := NewGroup(GroupOptions{StopTimeout: time.Second})
	g.Add("admin", rec.service("admin", nil, nil))
	g.Add("slow", Funcs{StartFunc: func(sctx context.Context) error {
		cancel() // the operator presses Ctrl-C while the store migrates
		<-sctx.Done()
		return fmt.Errorf("migrate: %w", sctx.Err())
	}})
	g.Add("gateway", rec.service("gateway", nil, nil), "slow")
	if err := g.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want, got := []string{"start admin", "stop admin"}, rec.all(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestGroupFailureStopsTheRest(t *testing.T) {
	var rec recorder
	boom := errors.New("boom")
	running := make(chan string, 1)
	g := NewGroup(GroupOptions{StopTimeout: time.Second})
	g.Add("admin", rec.service("admin", nil, running))
	g.Add("bad", Func(func(ctx context.Context) error {
		<-running // wait until admin runs, so the failure is mid-flight
		return boom
	}))
	err := g.Run(context.Background())
	if !errors.Is(err, boom) || err.Error() != "bad: boom" {
		t.Fatalf("want the failing service's error once, got %v", err)
	}
	if !slices.Equal(rec.all(), []string{"start admin", "stop admin"}) {
		t.Fatalf("admin was not stopped: %v", rec.all())
	}
}

func TestGroupStopTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	running := make(chan struct{})
	g := NewGroup(GroupOptions{StopTimeout: 20 * time.Millisecond, OnStarted: func() {}})
	g.Add("stuck", Func(func(ctx context.Context) error {
		close(running)
		<-release // ignores ctx
		return nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-running; cancel() }()
	if err := g.Run(ctx); !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("want ErrStopTimeout, got %v", err)
	}
}

func TestGroupAddChecksDependencies(t *testing.T) {
	for _, c := range []struct {
		name string
		add  func(g *Group)
		want string
	}{
		{"unknown dependency", func(g *Group) { g.Add("gateway", Func(nil), "store") }, `"gateway" depends on "store", which was not added before it`},
		{"duplicate", func(g *Group) { g.Add("a", Func(nil)); g.Add("a", Func(nil)) }, `"a" added twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), c.want) {
					t.Fatalf("panic %v, want one containing %q", r, c.want)
				}
			}()
			c.add(NewGroup(GroupOptions{}))
		})
	}
}

func TestListenErrorNamesTheSetting(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	_, err = Listen(context.Background(), "gateway.listen-addr", addr)
	var le *ListenError
	if !errors.As(err, &le) {
		t.Fatalf("want a ListenError, got %v", err)
	}
	if want := fmt.Sprintf("listen on %s (-gateway.listen-addr): address already in use", addr); err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestAdminServerProbes(t *testing.T) {
	h := NewHealth()
	h.Register("gateway")
	a := &AdminServer{
		Addr: "127.0.0.1:0", Setting: "server.http-addr", Health: h,
		Handlers: map[string]http.Handler{"/metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") })},
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	base := "http://" + a.BoundAddr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "gateway") {
		t.Fatalf("readyz before ready: %d %q", code, body)
	}
	h.SetReady("gateway", true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz when ready: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || body != "m 1\n" {
		t.Fatalf("metrics: %d %q", code, body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// One host holding idle connections to the admin listener takes at most
// AdminMaxConnectionsPerSource of them: probes from elsewhere still answer.
func TestAdminServerCapsConnectionsPerSource(t *testing.T) {
	h := NewHealth()
	a := &AdminServer{Addr: "127.0.0.1:0", Setting: "server.http-addr", Health: h}
	ctx, cancel := context.WithCancel(context.Background())
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	addr := a.BoundAddr().String()
	// kept opens a connection from src and sends a request: a kept
	// connection is answered, one over the caps closed without a byte.
	kept := func(src string) (net.Conn, bool) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			return c, false
		}
		var b [1]byte
		_, err = c.Read(b[:])
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection neither answered nor closed")
		}
		return c, err == nil
	}
	n := 0
	for range AdminMaxConnectionsPerSource + 3 {
		c, ok := kept("127.0.0.2")
		defer c.Close()
		if ok {
			n++
		}
	}
	if n != AdminMaxConnectionsPerSource {
		t.Fatalf("kept %d connections from one address, want %d", n, AdminMaxConnectionsPerSource)
	}
	c, ok := kept("127.0.0.1")
	defer c.Close()
	if !ok {
		t.Fatal("a probe from another address was refused")
	}
}
