// Command fleetctl is the FleetACS operator CLI: it converts captured CWMP
// envelopes to JSON and back (`fleetctl cwmp decode|encode`), reads the
// inventory and sets devices' credentials over the public gRPC API
// (`fleetctl devices list|get|set-credentials`) and manages API tokens
// (`fleetctl tokens create|list|revoke`), runs tasks (`fleetctl tasks
// create|get|list|cancel|watch`) and follows events (`fleetctl events
// watch`), manages the files CPEs download (`fleetctl files
// upload|list|get|url|delete`) and runs campaigns (`fleetctl campaigns
// create|list|get|pause|resume|abort`); presets join the same command tree
// in internal/cli.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fleetacs/fleetacs/cmd/fleetctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process, so tests drive the CLI in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Main(context.Background(), args, stdin, stdout, stderr)
}
