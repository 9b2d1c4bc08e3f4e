package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// BenchmarkTracingSession measures what tracing at a 1% sample rate costs
// a periodic CWMP session (Inform, InformResponse, empty POST, 204) in
// the code path of the distributed processes (issue 11): `fleetacs all`
// run in this process with its services calling each other over gRPC on
// loopback (-server.grpc-in-process=false: gateway → SessionService →
// worker → inventory, each call through the gRPC transport and its
// stats handlers, as between processes), driven by cpesim with 100 known
// devices and 8 sessions in flight.
//
// Two instances start side by side at each run of the benchmark; -count=N
// runs each sub-benchmark N times in a row, so alternate by invoking the
// benchmark N times with -count=1, with TRACING_BENCH_ON_FIRST set every
// other time (it measures "on" first):
//   - off: no trace exporter (the no-op tracer);
//   - on: OTLP/gRPC to an OTLP receiver in this test process with
//     OTEL_TRACES_SAMPLER=parentbased_traceidratio, ratio 0.01, and the
//     SDK's batch span processor (its default schedule).
//
// ns/op is wall time per session with 8 in flight (the inverse of the
// throughput), which other work on the machine moves; cpu-ns/op is the
// CPU time (user and system) the whole test process used per session,
// which it moves less; B/op and allocs/op count the whole process too.
// cpesim, the idle other instance and the OTLP receiver are in all of
// them, alike in both variants (the receiver gets about 1% of sessions).
func BenchmarkTracingSession(b *testing.B) {
	if testing.Short() {
		b.Skip("starts two fleetacs all-in-one instances")
	}
	_, endpoint := startOTLPReceiver(b)
	start := func(name string, env map[string]string) string {
		for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
			"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME"} {
			b.Setenv(k, env[k])
		}
		gw, adm := testenv.FreePort(b), testenv.FreePort(b)
		p := startProcess(b, "-log.level=warn", "-data-dir="+b.TempDir(), "-gateway.auth-anonymous",
			"-server.internal-grpc-addr=127.0.0.1:0", "-server.grpc-in-process=false",
			fmt.Sprintf("-gateway.listen-addr=127.0.0.1:%d", gw), fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm),
			"-server.grpc-addr=127.0.0.1:0", "all")
		testenv.WaitFor(b, 30*time.Second, func() error {
			p.alive(b)
			return httpReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", adm))
		})
		url := fmt.Sprintf("http://127.0.0.1:%d/", gw)
		// First contacts (tree discovery) of the devices, outside the
		// measurement.
		runTracingSim(b, url, name, false, 0)
		return url
	}
	offURL := start("off", nil)
	// TRACING_BENCH_RATIO replaces the 1% (say 1, to see what a sampled
	// session costs); the sub-benchmark keeps its name.
	ratio := "0.01"
	if r := os.Getenv("TRACING_BENCH_RATIO"); r != "" {
		ratio = r
	}
	onURL := start("on", map[string]string{
		"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio, "OTEL_SERVICE_NAME": "fleetacs-bench",
	})
	variants := []struct{ name, url string }{{"tracing=off", offURL}, {"tracing=1%", onURL}}
	if os.Getenv("TRACING_BENCH_ON_FIRST") != "" {
		// What the instance measured first leaves behind (its background
		// work, the heap) falls in the other's measurement: alternate
		// the order between invocations.
		variants[0], variants[1] = variants[1], variants[0]
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU(b)
			b.ResetTimer()
			sum := runTracingSim(b, v.url, v.name, true, b.N)
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(sum.SessionsOK)/sum.Elapsed.Seconds(), "sessions/s")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runTracingSim runs cpesim against url: the first contacts of 100
// devices, or (known) n periodic sessions of them, 8 in flight.
func runTracingSim(b *testing.B, url, prefix string, known bool, n int) sim.Summary {
	b.Helper()
	cfg := sim.Config{URL: url, Model: sim.TR181, Devices: 100, Seed: 11, SerialPrefix: "TRC",
		BootStorm: !known, Known: known, Sessions: n, Concurrency: 8, Timeout: 30 * time.Second}
	s, err := sim.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	sum, err := s.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if sum.SessionsFailed > 0 || (known && sum.SessionsOK != int64(n)) || (!known && sum.SessionsOK < 100) {
		sum.WriteText(os.Stderr)
		b.Fatalf("cpesim %s (known %v): %d ok, %d failed", prefix, known, sum.SessionsOK, sum.SessionsFailed)
	}
	return sum
}
