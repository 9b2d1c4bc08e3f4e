package lifecycle

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder notes the order in which services stop.
type recorder struct {
	mu    sync.Mutex
	order []string
}

func (r *recorder) service(name string, started chan<- struct{}) Service {
	return Func(func(ctx context.Context) error {
		started <- struct{}{}
		<-ctx.Done()
		r.mu.Lock()
		r.order = append(r.order, name)
		r.mu.Unlock()
		return nil
	})
}

func TestGroupStopsInReverseOrder(t *testing.T) {
	var rec recorder
	started := make(chan struct{}, 3)
	g := NewGroup(nil, time.Second)
	g.Add("admin", rec.service("admin", started))
	g.Add("sessions", rec.service("sessions", started))
	g.Add("gateway", rec.service("gateway", started))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	for range 3 {
		<-started
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []string{"gateway", "sessions", "admin"}; !slices.Equal(rec.order, want) {
		t.Fatalf("stop order %v, want %v", rec.order, want)
	}
}

func TestGroupFailureStopsTheRest(t *testing.T) {
	var rec recorder
	started := make(chan struct{}, 2)
	boom := errors.New("boom")
	g := NewGroup(nil, time.Second)
	g.Add("admin", rec.service("admin", started))
	g.Add("bad", Func(func(ctx context.Context) error {
		<-started // wait until admin runs, so the failure is mid-flight
		return boom
	}))
	err := g.Run(context.Background())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "bad: boom") {
		t.Fatalf("want the failing service's error, got %v", err)
	}
	if !slices.Equal(rec.order, []string{"admin"}) {
		t.Fatalf("admin was not stopped: %v", rec.order)
	}
}

func TestGroupStopTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	g := NewGroup(nil, 20*time.Millisecond)
	running := make(chan struct{})
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

func TestAdminServerProbes(t *testing.T) {
	h := NewHealth()
	h.Register("gateway")
	addrc := make(chan net.Addr, 1)
	a := &AdminServer{
		Addr: "127.0.0.1:0", Health: h,
		Handlers:  map[string]http.Handler{"/metrics": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "m 1\n") })},
		Listening: func(addr net.Addr) { addrc <- addr },
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	base := "http://" + (<-addrc).String()
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
