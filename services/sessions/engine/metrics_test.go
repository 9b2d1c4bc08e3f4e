package engine

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The exchange histogram is in seconds with boundaries that tell a
// millisecond exchange from a slow one.
func TestExchangeHistogramBuckets(t *testing.T) {
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	zero := func() int64 { return 0 }
	m, err := newMetrics(mp, func() int { return 0 }, zero, zero)
	if err != nil {
		t.Fatal(err)
	}
	m.observeExchange(3 * time.Millisecond)
	m.observeExchange(2 * time.Second)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
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
