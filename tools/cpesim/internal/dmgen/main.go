// Command dmgen generates cpesim's data-model tables
// (tools/cpesim/sim/datamodels) from the Broadband Forum's data-model XML:
// the facts the simulator needs about TR-181 and TR-098, in a compact form
// committed to the repository, so that cpesim needs no file outside it at
// run time.
//
// The BBF XML is not part of the repository. dmgen reads it from the
// directory named by -bbf, else by $FLEETACS_BBF_DIR, else from shared/tr069
// beside the repository root; that directory must hold
// tr-181-2-17-0-cwmp-full.xml and tr-098-1-8-0-full.xml (both from
// https://github.com/BroadbandForum/cwmp-data-models). Run it through
// `make datamodels` at the repository root, or `go generate ./sim` in
// tools/cpesim.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fleetacs/fleetacs/tools/cpesim/internal/datamodel"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dmgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("dmgen", flag.ContinueOnError)
	bbf := fs.String("bbf", os.Getenv("FLEETACS_BBF_DIR"), "directory holding the BBF data-model XML (default: $FLEETACS_BBF_DIR, else shared/tr069 beside the repository root)")
	out := fs.String("out", "datamodels", "directory the tables are written to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := *bbf
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return fmt.Errorf("find the BBF XML: %w; name its directory with -bbf", err)
		}
		dir = filepath.Join(filepath.Dir(root), "shared", "tr069")
	}
	for _, s := range datamodel.Sources {
		table, err := datamodel.Generate(dir, s)
		if err != nil {
			return err
		}
		gz, err := datamodel.Compress(table)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, s.Table), gz, 0o644); err != nil {
			return fmt.Errorf("write %s table: %w", s.Model, err)
		}
		fmt.Printf("dmgen: %s: %d bytes (%d uncompressed) from %s\n", filepath.Join(*out, s.Table), len(gz), len(table), filepath.Join(dir, s.File))
	}
	return nil
}

// repoRoot is the nearest directory at or above the working directory that
// holds go.work.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work at or above " + wd)
		}
		dir = parent
	}
}
