// Package check validates the deployment files offline: docker-compose.yml
// against the Compose specification, and the Helm chart
// deploy/helm/fleetacs, rendered by the pinned helm, against the Kubernetes
// API types. Both check that every fleetacs command line and FLEETACS_*
// variable they hold names a flag fleetacs has (docs/deploy.md).
package check

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// Fleetacs is what the fleetacs command accepts, read from its help
// golden (cmd/fleetacs/testdata/help.txt), which TestHelpGolden keeps
// equal to `fleetacs -help`.
type Fleetacs struct {
	Flags   map[string]bool // flag names without the dash
	Env     map[string]bool // FLEETACS_* variables
	Targets map[string]bool // all, inventory, ..., and the healthcheck command
	bools   map[string]bool // flags whose default is true or false
}

var (
	flagLine   = regexp.MustCompile(`^  -([a-z0-9][a-z0-9.-]*)$`)
	envRef     = regexp.MustCompile(`\[(FLEETACS_[A-Z0-9_]+)\]$`)
	targetLine = regexp.MustCompile(`^  ([a-z][a-z-]*) +\S`)
)

// ReadHelp parses the help text at path.
func ReadHelp(path string) (*Fleetacs, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := &Fleetacs{Flags: map[string]bool{}, Env: map[string]bool{}, Targets: map[string]bool{}, bools: map[string]bool{}}
	inTargets := false
	last := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasSuffix(line, "Targets:"):
			inTargets = true
		case line == "":
			inTargets = false
		case inTargets && targetLine.MatchString(line):
			h.Targets[targetLine.FindStringSubmatch(line)[1]] = true
		case flagLine.MatchString(line):
			last = flagLine.FindStringSubmatch(line)[1]
			h.Flags[last] = true
		case envRef.MatchString(line):
			h.Env[envRef.FindStringSubmatch(line)[1]] = true
			if boolDefault.MatchString(line) {
				h.bools[last] = true
			}
		}
		if strings.Contains(line, "fleetacs [flags] healthcheck") {
			h.Targets["healthcheck"] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(h.Flags) < 20 || len(h.Env) != len(h.Flags) || !h.Targets["all"] || !h.Targets["gateway"] {
		return nil, fmt.Errorf("%s: read %d flags, %d variables, targets %v: not fleetacs's help", path, len(h.Flags), len(h.Env), h.Targets)
	}
	return h, nil
}

// CheckArgs checks a fleetacs command line (the container's args, after
// the entry point): every flag exists, in -name, -name=value or -name value
// form, and the rest names targets (or healthcheck and its argument).
func (h *Fleetacs) CheckArgs(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no target")
	}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			break
		}
		if a == "--" {
			i++
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !h.Flags[name] {
			return fmt.Errorf("fleetacs has no flag -%s", name)
		}
		// A flag without =value takes the next argument, except a
		// boolean one; the help marks those by their default.
		if !hasValue && !h.isBool(name) {
			i++
		}
	}
	rest := args[i:]
	if len(rest) == 0 {
		return fmt.Errorf("%q names no target", args)
	}
	if rest[0] == "healthcheck" {
		if len(rest) > 2 || (len(rest) == 2 && rest[1] != "live" && rest[1] != "ready") {
			return fmt.Errorf("healthcheck arguments %q", rest[1:])
		}
		return nil
	}
	for _, t := range rest {
		if !h.Targets[t] || t == "healthcheck" {
			return fmt.Errorf("fleetacs has no target %q", t)
		}
	}
	return nil
}

// CheckEnv checks one environment variable of a fleetacs container:
// FLEETACS_* ones must be fleetacs's.
func (h *Fleetacs) CheckEnv(name string) error {
	if strings.HasPrefix(name, "FLEETACS_") && !h.Env[name] {
		return fmt.Errorf("fleetacs reads no variable %s", name)
	}
	return nil
}

// boolDefault marks a boolean flag's help line.
var boolDefault = regexp.MustCompile(`\(default "(true|false)"\)`)

func (h *Fleetacs) isBool(name string) bool { return h.bools[name] }
