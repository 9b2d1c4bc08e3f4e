package sim

import (
	"context"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// sharedDir finds shared/ (or fails the test: the data models are
// required, never optional).
func sharedDir(t testing.TB) string {
	t.Helper()
	dir, err := FindSharedDir("")
	if err != nil {
		t.Fatalf("the simulator needs the BBF data models in shared/tr069: %v", err)
	}
	return dir
}

// testConfig is a one-device boot storm against acs with protocol time
// compressed 1000-fold.
func testConfig(t testing.TB, acs *testACS) Config {
	return Config{
		URL:       acs.url(),
		SharedDir: sharedDir(t),
		Devices:   1,
		BootStorm: true,
		TimeScale: 0.001,
		Timeout:   5 * time.Second,
	}
}

// runSim runs a simulator to its natural end (or 10 s, as a safety net
// against a hang; the tests do not rely on it).
func runSim(t testing.TB, cfg Config) (*Simulator, Summary) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := s.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("run did not end on its own: %+v", sum)
	}
	return s, sum
}

func TestSmoke(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n == 1 {
			return []cwmp.Message{&cwmp.GetParameterValues{ParameterNames: []string{"Device.DeviceInfo."}}, &cwmp.Reboot{CommandKey: "rk"}}
		}
		return nil
	}
	_, sum := runSim(t, testConfig(t, acs))
	informs, done, _, _ := acs.snapshot()
	for _, inf := range informs {
		t.Logf("inform %s", eventCodes(inf))
	}
	for _, d := range done {
		t.Logf("%s", describe(d))
	}
	sum.WriteText(testWriter{t})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
