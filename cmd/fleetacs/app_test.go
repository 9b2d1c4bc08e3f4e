package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/help.txt")

func noEnv(string) (string, bool) { return "", false }

// TestHelpGolden makes every flag change visible in review (docs/style.md rule 2: golden
// help file).
func TestHelpGolden(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-help"}, &out, &errb, noEnv); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	path := filepath.Join("testdata", "help.txt")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestHelpGolden -update)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("help changed; review and run go test -run TestHelpGolden -update\n--- got\n%s", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "name at least one target"},
		{[]string{"gatewy"}, `unknown target "gatewy"`},
		{[]string{"nats"}, `unknown target "nats"`}, // a shared part, not a target
		{[]string{"-no-such-flag", "all"}, "flag provided but not defined"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errb, noEnv); code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		// One line and a hint, not the flag list (issue 8 item 16).
		lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], c.want) || lines[1] != "Run 'fleetacs -help' for the targets and flags." {
			t.Errorf("%v: stderr %q, want one line with %q and the hint", c.args, errb.String(), c.want)
		}
	}
}

func TestEnvironmentReachesFlags(t *testing.T) {
	var out, errb bytes.Buffer
	env := map[string]string{"FLEETACS_LOG_LEVEL": "shout"}
	code := run(context.Background(), []string{"all"}, &out, &errb, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if code != 2 || !strings.Contains(errb.String(), `log level "shout"`) {
		t.Fatalf("exit %d, stderr %q: the environment variable did not reach -log.level", code, errb.String())
	}
}

func TestSplitProcessesNeedRedis(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"-server.http-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0", "-client.inventory-addr=127.0.0.1:1", "gateway"}
	if code := run(context.Background(), args, &out, &errb, noEnv); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "set -redis.addr") {
		t.Fatalf("stderr %q does not say what to set", errb.String())
	}
}

func TestResolveOrdersDependencies(t *testing.T) {
	order, err := resolve(registry(), []string{"gateway", "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[m.name] = i
	}
	for _, dep := range []string{"affinity", "inventory-client"} {
		if pos[dep] > pos["gateway"] || pos[dep] > pos["sessions"] {
			t.Errorf("%s starts after a service that needs it: %v", dep, pos)
		}
	}
	if pos["grpc-internal"] > pos["sessions"] || pos["internal-auth"] > pos["inventory-client"] {
		t.Errorf("the internal server or credential starts after what needs it: %v", pos)
	}
	if _, ok := pos["grpc-public"]; ok {
		t.Errorf("the public gRPC server is opened by a process that serves no public API: %v", pos)
	}
	if _, ok := pos["nats"]; ok {
		t.Errorf("nats pulled in without target all")
	}
}

// The notifier takes the Redis client the affinity module makes: the
// replicas share the STUN bindings there (docs/protocol.md §8.2).
func TestResolveNotifierAfterAffinity(t *testing.T) {
	order, err := resolve(registry(), []string{"notifier"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[m.name] = i
	}
	if a, ok := pos["affinity"]; !ok || a > pos["notifier"] {
		t.Fatalf("affinity does not come before the notifier: %v", pos)
	}
}

// Whatever the order of the targets, the CWMP listener comes after the
// session path behind it: inventory, its client, the session worker.
func TestResolveOpensGatewayLast(t *testing.T) {
	for _, targets := range [][]string{{"gateway", "sessions", "inventory"}, {"all"}, {"sessions", "gateway", "inventory"}} {
		order, err := resolve(registry(), targets)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range order {
			if slices.Contains([]string{"inventory", "inventory-client", "sessions", "gateway"}, m.name) {
				got = append(got, m.name)
			}
		}
		if want := []string{"inventory", "inventory-client", "sessions", "gateway"}; !slices.Equal(got, want) {
			t.Errorf("targets %v start %v, want %v", targets, got, want)
		}
	}
}
