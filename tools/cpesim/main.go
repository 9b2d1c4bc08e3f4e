// Command cpesim simulates TR-069 CPEs and generates CWMP load against an
// ACS: thousands of devices with TR-181 or TR-098 data models, closed- or
// open-loop load, periodic informs, boot storms and connection request
// listeners. It prints a summary (-json for a machine-readable one) and
// exits non-zero when more sessions failed than -max-errors allows.
//
// The simulator itself is package sim, which tests of other modules import.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// Exit statuses.
const (
	exitOK     = 0
	exitErrors = 1 // more failed sessions than -max-errors
	exitUsage  = 2 // bad flags or configuration, or the run could not start
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// loadChosen reports whether the command line names a load: a boot storm,
// periodic informs, a rate, or a bound on sessions or time.
func loadChosen(fs *flag.FlagSet) bool {
	chosen := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "boot-storm", "periodic", "rate", "sessions", "duration":
			chosen = true
		}
	})
	return chosen
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cpesim", flag.ContinueOnError)
	// Parse errors are reported in one line below, not above the whole
	// flag list; -help prints the list to stdout.
	fs.SetOutput(io.Discard)
	var cfg sim.Config
	cfg.RegisterFlags(fs)
	jsonOut := fs.Bool("json", false, "print the summary as JSON")
	maxErrors := fs.Int64("max-errors", 0, "exit with status 1 when more sessions than this failed")
	cpuProfile := fs.String("cpuprofile", "", "write the simulator's CPU profile to this file")
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "usage: cpesim [flags]\n\nSimulates CWMP CPEs against the ACS at -url and prints a summary.\n\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "cpesim: %v\nRun 'cpesim -help' for the flags.\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cpesim: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	// Devices that listen for connection requests, with no load named,
	// behave as CPEs do: they bootstrap, then inform every -interval and
	// whenever the ACS wakes them, rather than run sessions back to back.
	if cfg.ConnReq != sim.ConnReqOff && !loadChosen(fs) {
		cfg.BootStorm, cfg.Periodic = true, true
		fmt.Fprintf(stderr, "cpesim: devices bootstrap, then inform every %s and when woken by a connection request (-cr without -boot-storm, -periodic, -rate, -sessions or -duration)\n", cfg.Interval)
	}
	// Validate what the flags say before New fills zero fields with
	// defaults: -devices 0 is a mistake, not a request for the default.
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "cpesim: %v\n", err)
		return exitUsage
	}
	cfg.OnSession = firstFailures(stderr, cfg.GiveUp)
	s, err := sim.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "cpesim: %v\n", err)
		return exitUsage
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "cpesim: %v\n", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "cpesim: start CPU profile: %v\n", err)
			return exitUsage
		}
		defer pprof.StopCPUProfile()
	}
	sum, err := s.Run(ctx)
	if err != nil && !errors.Is(err, sim.ErrUnreachable) {
		fmt.Fprintf(stderr, "cpesim: %v\n", err)
		return exitUsage
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			fmt.Fprintf(stderr, "cpesim: write summary: %v\n", err)
			return exitUsage
		}
	} else {
		sum.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "cpesim: %v\n", err)
		return exitErrors
	}
	if sum.ErrorCount() > *maxErrors {
		fmt.Fprintf(stderr, "cpesim: %d sessions failed (-max-errors %d)\n", sum.ErrorCount(), *maxErrors)
		return exitErrors
	}
	return exitOK
}

// firstFailures reports on stderr, as it happens, the first failed session
// of each kind: someone who aimed cpesim at the wrong place learns it at
// once rather than from the summary at the end.
func firstFailures(stderr io.Writer, giveUp time.Duration) func(sim.SessionReport) {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(r sim.SessionReport) {
		if r.OK || r.Err == nil || r.Kind == "canceled" || r.Kind == "http_503" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[r.Kind] {
			return
		}
		seen[r.Kind] = true
		hint := "devices retry as CPEs do; the summary counts every failure"
		if r.Kind == "connect" && giveUp > 0 {
			hint = fmt.Sprintf("devices retry as CPEs do; the run ends if the ACS answers nothing within %s (-give-up)", giveUp)
		}
		fmt.Fprintf(stderr, "cpesim: a session failed (%s): %v; %s\n", r.Kind, r.Err, hint)
	}
}
