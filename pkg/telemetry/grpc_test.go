package telemetry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// TestGRPCServerMetrics records calls of a real gRPC server: one series per
// method and code, and a bounded number of series whatever methods clients
// make up.
func TestGRPCServerMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h, err := NewGRPCServerMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(h))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	cc := testenv.GRPCConn(t, srv)
	ctx := context.Background()
	hc := healthpb.NewHealthClient(cc)
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("check of an unknown service: %v", err)
	}
	// Method names are the client's to choose (the server records calls of
	// unknown ones as well, when it records them): a bounded set of series.
	for i := range maxMethodSets + 20 {
		cctx := h.TagRPC(ctx, &stats.RPCTagInfo{FullMethodName: fmt.Sprintf("/made.Up/M%d", i)})
		h.HandleRPC(cctx, &stats.End{Error: status.Error(codes.Unimplemented, "no"), BeginTime: time.Now(), EndTime: time.Now()})
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	series := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rpc.server.call.duration" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				method, _ := dp.Attributes.Value("rpc.method")
				code, _ := dp.Attributes.Value("rpc.response.status_code")
				counts[method.AsString()+" "+code.AsString()] += dp.Count
				series++
			}
		}
	}
	if got := counts["grpc.health.v1.Health/Check OK"]; got != 3 {
		t.Errorf("Check OK counted %d, want 3 (%v)", got, counts)
	}
	if got := counts["grpc.health.v1.Health/Check NOT_FOUND"]; got != 1 {
		t.Errorf("Check NotFound counted %d, want 1", got)
	}
	if series > maxMethodSets+1 {
		t.Errorf("%d series from made-up methods, want at most %d", series, maxMethodSets+1)
	}
	var made uint64
	for k, n := range counts {
		if k != "grpc.health.v1.Health/Check OK" && k != "grpc.health.v1.Health/Check NOT_FOUND" {
			made += n
		}
	}
	if made != maxMethodSets+20 || counts["_OTHER UNIMPLEMENTED"] == 0 {
		t.Errorf("made-up calls counted %d (other %d), want %d", made, counts["_OTHER UNIMPLEMENTED"], maxMethodSets+20)
	}
}
