package gateway

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// Some tests run against a private redis-server (pkg/testenv).
func TestMain(m *testing.M) { testenv.Main(m) }

// openSessionAs runs the Digest handshake for serial with the given
// credentials on a fresh connection from the address from, and returns the
// connection, the client that answered and the Inform's answer.
func (h *harness) openSessionAs(from, serial, user, pass string) (*cpeConn, *digestClient, answer) {
	h.t.Helper()
	c := dialCPEFrom(h.t, from, h.addr)
	first := c.post(informBody(h.t, serial, "2 PERIODIC"))
	if first.StatusCode != http.StatusUnauthorized {
		h.t.Fatalf("first Inform of %s: status %d, want 401", serial, first.StatusCode)
	}
	d := &digestClient{user: user, pass: pass}
	d.learn(h.t, first)
	a := c.post(informBody(h.t, serial, "2 PERIODIC"), d.header("/cwmp"))
	return c, d, a
}

// challengeFor returns a digest client for user/pass that learnt a fresh
// challenge (from an Inform of a throw-away device on a new connection).
func (h *harness) challengeFor(user, pass string) *digestClient {
	h.t.Helper()
	d := &digestClient{user: user, pass: pass}
	d.learn(h.t, dialCPE(h.t, h.addr).post(informBody(h.t, "PROBE")))
	return d
}

// withMetrics makes the gateway report to a manual reader.
func withMetrics(r *sdkmetric.ManualReader) func(*Deps) {
	return func(d *Deps) { d.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)) }
}

// counterValue reads an Int64 counter's data point with exactly attrs.
func counterValue(t *testing.T, r *sdkmetric.ManualReader, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := attribute.NewSet(attrs...)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Value
				}
			}
		}
	}
	return 0
}

// gpvStep answers an open session's empty POST and returns the answer: 200
// with GetParameterValues while the session lives.
func gpvStep(t *testing.T, a answer) bool {
	t.Helper()
	return a.StatusCode == http.StatusOK && len(a.body) > 0
}
