package sessions

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// TestExchangeSpans checks the span of each CWMP exchange and its
// attributes (docs/operations.md, "Traces"): the Inform, the empty POST
// the ACS answers with a request, and a CPE fault with its code.
func TestExchangeSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := newCPE(t, "SN-TRACE", tree300())
	mem := affinity.NewMemory(nil)
	st := mem.Store()
	w, err := New(testConfig(), Deps{Inventory: &knownInventory{}, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry,
		Sessions: st.Sessions, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const sid = "trace-1"
	l, err := mem.Leases().Acquire(ctx, testTenant, c.key, sid, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(req *sessionsv1.ExchangeRequest) {
		t.Helper()
		if _, err := w.Exchange(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	exchange(&sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
		Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: c.informBody("0 BOOTSTRAP")})
	exchange(&sessionsv1.ExchangeRequest{SessionId: sid, Tenant: testTenant, DeviceKey: c.key})
	exchange(&sessionsv1.ExchangeRequest{SessionId: sid, Tenant: testTenant, DeviceKey: c.key,
		Body: c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Body: cwmp.NewFault(cwmp.FaultInvalidParameterName)})})

	ended := rec.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans, want one per exchange (3)", len(ended))
	}
	want := []map[attribute.Key]string{
		{"cwmp.rpc": "Inform", "cwmp.acs_rpc": "InformResponse", "fleetacs.new_session": "true"},
		{"cwmp.rpc": "", "fleetacs.new_session": "false"},
		{"cwmp.rpc": "Fault", "cwmp.fault_code": "9005"},
	}
	for i, sp := range ended {
		attrs := map[attribute.Key]string{}
		for _, kv := range sp.Attributes() {
			attrs[kv.Key] = kv.Value.Emit()
		}
		if sp.Name() != "cwmp.exchange" || attrs["fleetacs.session_id"] != sid || attrs["fleetacs.device_id"] != c.key || attrs["fleetacs.tenant"] != testTenant {
			t.Errorf("span %d: %s %v, want cwmp.exchange of session %s, device %s, tenant %s", i, sp.Name(), attrs, sid, c.key, testTenant)
		}
		for k, v := range want[i] {
			if attrs[k] != v {
				t.Errorf("span %d: %s = %q, want %q (all: %v)", i, k, attrs[k], v, attrs)
			}
		}
	}
	if _, ok := attrsOf(ended[1])["cwmp.acs_rpc"]; !ok {
		t.Errorf("the empty POST's span names no ACS request: %v", attrsOf(ended[1]))
	}
	if _, ok := attrsOf(ended[0])["cwmp.fault_code"]; ok {
		t.Error("the Inform's span has a fault code")
	}
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.Emit()
	}
	return m
}
