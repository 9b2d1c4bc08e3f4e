package engine

import (
	"context"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The exchange histogram is in seconds with boundaries that tell a
// millisecond exchange from a slow one.
func TestExchangeHistogramBuckets(t *testing.T) {
	m, r := testMetrics(t)
	m.observeExchange(3 * time.Millisecond)
	m.observeExchange(2 * time.Second)
	rm := collect(t, r)
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != "fleetacs.sessions.exchange.duration" {
				continue
			}
			if md.Unit != "s" {
				t.Errorf("unit %q, want s", md.Unit)
			}
			dp := md.Data.(metricdata.Histogram[float64]).DataPoints[0]
			// 3 ms and 2 s fall in different buckets, the first below 5 ms.
			var first, second = -1, -1
			for i, c := range dp.BucketCounts {
				if c > 0 && first < 0 {
					first = i
				} else if c > 0 {
					second = i
				}
			}
			if first < 0 || second < 0 || first >= len(dp.Bounds) || dp.Bounds[first] > 0.005 {
				t.Errorf("bounds %v, counts %v: want 3 ms and 2 s in separate buckets, 3 ms under 5 ms", dp.Bounds, dp.BucketCounts)
			}
			return
		}
	}
	t.Fatal("no fleetacs.sessions.exchange.duration collected")
}

// RPC and event labels stay bounded: vendor methods, vendor fault codes
// and vendor events each have one value, other codes another.
func TestRPCAndEventLabelsBounded(t *testing.T) {
	m, r := testMetrics(t)
	m.rpc("GetParameterValues", nil)
	m.rpc("GetParameterValues", &cwmp.Fault{Code: 9005})
	m.rpc("X_ACME_Reset", &cwmp.Fault{Code: 9801})
	m.rpc("X_OTHER_Thing", &cwmp.Fault{Code: 9850})
	m.rpc("Reboot", &cwmp.Fault{Code: 123456})
	m.informEvents([]cwmp.Event{{Code: "1 BOOT"}, {Code: "M Reboot"}, {Code: "X ACME Event"}, {Code: "M X_ACME_Reset"}})
	m.answerQuirks("GetParameterValues", cwmp.Matched{MissingID: true}, true)
	m.answerQuirks("X_ACME_Reset", cwmp.Matched{ForeignID: "cpe-1"}, false)
	m.answerQuirks("X_OTHER_Thing", cwmp.Matched{ForeignID: "cpe-2"}, false)
	m.answerQuirks("Reboot", cwmp.Matched{}, false) // no quirk: nothing counted
	rm := collect(t, r)
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			if md.Name != "fleetacs.sessions.rpcs" && md.Name != "fleetacs.sessions.inform_events" && md.Name != "fleetacs.sessions.answer_quirks" {
				continue
			}
			for _, dp := range md.Data.(metricdata.Sum[int64]).DataPoints {
				k := md.Name
				for _, kv := range dp.Attributes.ToSlice() {
					k += " " + string(kv.Key) + "=" + kv.Value.AsString()
				}
				got[k] += dp.Value
			}
		}
	}
	want := map[string]int64{
		"fleetacs.sessions.rpcs fault=none method=GetParameterValues":                   1,
		"fleetacs.sessions.rpcs fault=9005 method=GetParameterValues":                   1,
		"fleetacs.sessions.rpcs fault=vendor method=vendor":                             2,
		"fleetacs.sessions.rpcs fault=other method=Reboot":                              1,
		"fleetacs.sessions.inform_events event=1 BOOT":                                  1,
		"fleetacs.sessions.inform_events event=M Reboot":                                1,
		"fleetacs.sessions.inform_events event=vendor":                                  2,
		"fleetacs.sessions.answer_quirks method=GetParameterValues quirk=missing_id":    1,
		"fleetacs.sessions.answer_quirks method=GetParameterValues quirk=retry_request": 1,
		"fleetacs.sessions.answer_quirks method=vendor quirk=foreign_id":                2,
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

// Counting an RPC, an Inform event or an answer quirk whose labels were seen before
// allocates nothing: it runs on every exchange.
func TestLabelSetsDoNotAllocate(t *testing.T) {
	zero := func() int64 { return 0 }
	m, err := newMetrics(sdkmetric.NewMeterProvider(), func() int { return 0 }, zero, zero)
	if err != nil {
		t.Fatal(err)
	}
	f := &cwmp.Fault{Code: 9005}
	m.rpc("GetParameterValues", f)
	m.answerQuirks("GetParameterValues", cwmp.Matched{ForeignID: "7"}, false)
	if n := testing.AllocsPerRun(100, func() {
		_ = rpcAttr("GetParameterValues", "9005")
		_ = eventAttr("2 PERIODIC")
		_ = quirkAttr("GetParameterValues", quirkForeignID)
	}); n != 0 {
		t.Errorf("%v allocations per lookup", n)
	}
}

// testMetrics returns the engine's metrics on a meter provider read by the
// manual reader returned.
func testMetrics(t *testing.T) (*metrics, *sdkmetric.ManualReader) {
	t.Helper()
	r := sdkmetric.NewManualReader()
	zero := func() int64 { return 0 }
	m, err := newMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), func() int { return 0 }, zero, zero)
	if err != nil {
		t.Fatal(err)
	}
	return m, r
}

// collect reads what r holds.
func collect(t *testing.T, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}
