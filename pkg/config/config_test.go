package config

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"gateway.listen-addr":        "FLEETACS_GATEWAY_LISTEN_ADDR",
		"sessions.checkpoint-ttl":    "FLEETACS_SESSIONS_CHECKPOINT_TTL",
		"inventory.mongodb.database": "FLEETACS_INVENTORY_MONGODB_DATABASE",
	} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestApplyEnvPrecedence(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	addr := fs.String("gateway.listen-addr", ":7547", "")
	timeout := fs.Duration("gateway.read-timeout", time.Second, "")
	untouched := fs.Int("gateway.max-sessions", 10, "")
	if err := fs.Parse([]string{"-gateway.listen-addr=:1"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"FLEETACS_GATEWAY_LISTEN_ADDR":  ":2", // loses to the flag
		"FLEETACS_GATEWAY_READ_TIMEOUT": "5s",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := ApplyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if *addr != ":1" || *timeout != 5*time.Second || *untouched != 10 {
		t.Fatalf("got addr=%q timeout=%v max=%d", *addr, *timeout, *untouched)
	}
}

func TestApplyEnvBadValue(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("gateway.read-timeout", time.Second, "")
	_ = fs.Parse(nil)
	err := ApplyEnv(fs, func(k string) (string, bool) { return "soon", k == "FLEETACS_GATEWAY_READ_TIMEOUT" })
	if err == nil || !strings.Contains(err.Error(), "FLEETACS_GATEWAY_READ_TIMEOUT") {
		t.Fatalf("want an error naming the variable, got %v", err)
	}
}
