// Command fleetacs runs any subset of FleetACS's services in one process:
// `fleetacs all` for everything on the embedded default, `fleetacs gateway`
// or `fleetacs sessions inventory` for the pieces of a real deployment. The
// services in one process reach each other through the same gRPC APIs,
// generated clients and handlers they use across processes; only the
// transport is skipped (pkg/grpcinproc, -server.grpc-in-process).
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGCPercent replaces Go's GOGC default of 100 unless GOGC is set. A
// CWMP session allocates many short-lived objects (envelopes, messages,
// diffs) and little that lives on; at 100 the collector's marking took
// 7.5% of the CPU of `fleetacs all` under load, and 200 lifted its
// throughput by a tenth for a heap that stays small (BENCHMARKS.md).
// GOMEMLIMIT still caps the heap where a container sets one.
const defaultGCPercent = 200

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := shutdownOnSignal()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// shutdownOnSignal returns a context that ends at the first SIGINT or
// SIGTERM, which starts the graceful shutdown (open sessions drain first:
// -gateway.drain-grace, -sessions.drain-timeout). The signals take their
// default action again before the context ends, so that a second one ends
// the process at once: the operator who pressed Ctrl-C twice does not wait
// for sessions whose CPEs are gone. What was committed stays; the sessions
// cut short are retried as after a crash (docs/operations.md, "Stopping
// a process").
func shutdownOnSignal() (context.Context, context.CancelFunc) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-sig:
		case <-ctx.Done():
		}
		signal.Stop(sig)
		cancel()
	}()
	return ctx, cancel
}
