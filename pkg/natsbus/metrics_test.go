package natsbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/telemetry/telemetrytest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// The instrumented JetStream records publishes, acknowledgement waits,
// direct gets and stream infos; a missing message is no error, a publish
// no stream takes is one.
func TestInstrumentRecordsCalls(t *testing.T) {
	metrics, cm := telemetrytest.ClientMetrics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, raw, err := natsbus.Connect(ctx, testenv.NATS(t), t.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js := natsbus.Instrument(raw, cm)
	if natsbus.MetricsOf(js) != cm || natsbus.MetricsOf(raw) != nil {
		t.Fatal("MetricsOf does not find the metrics")
	}
	u := testenv.UniqueName(t)
	n := natsbus.New(u, strings.ToUpper(u)+"_")
	if err := natsbus.EnsureStreams(ctx, raw, n, TestStreamOptions); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, n.TaskQueue("tasks", "D1"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, n.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetMsg(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetMsg(ctx, ack.Sequence+1000); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("get a missing message: %v", err)
	}
	ap := natsbus.NewAsyncPublisher(js, 4, 10*time.Second)
	done := make(chan error, 1)
	m := nats.NewMsg(n.TaskQueue("tasks", "D2"))
	if err := ap.Publish(ctx, m, true, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// No stream takes this subject: the publish fails.
	if _, err := js.Publish(ctx, u+".nowhere", []byte("x")); err == nil {
		t.Fatal("publish without a stream succeeded")
	}
	get := func(name, op string) float64 {
		v, _ := testenv.Metric(t, metrics, name, "system", "nats", "operation", op)
		return v
	}
	for op, want := range map[string]float64{"publish": 2, "stream_info": 2, "direct_get": 2, "ack_wait": 1} {
		if got := get("fleetacs_client_request_duration_seconds_count", op); got != want {
			t.Errorf("%s: %v calls, want %v", op, got, want)
		}
	}
	if got := get("fleetacs_client_request_errors_total", "direct_get"); got != 0 {
		t.Errorf("missing message counted as %v errors", got)
	}
	if got := get("fleetacs_client_request_errors_total", "publish"); got != 1 {
		t.Errorf("publish errors %v, want 1", got)
	}
}
