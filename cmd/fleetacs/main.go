// Command fleetacs runs any subset of FleetACS's services in one process:
// `fleetacs all` for everything on the embedded default, `fleetacs gateway`
// or `fleetacs sessions inventory` for the pieces of a real deployment. The
// services in one process talk to each other over the same gRPC APIs they use
// across processes, so the all-in-one binary runs the production code paths.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}
