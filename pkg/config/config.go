// Package config holds what every FleetACS service configuration shares: the
// rule that maps a flag to its FLEETACS_ environment variable, and the
// loading order flags > environment > defaults (docs/style.md rule 2).
//
// A service declares its settings as a Config struct with
// RegisterFlags(*flag.FlagSet) and Validate() error; flags are named
// "<service>.<kebab-name>" and each has the environment variable EnvName
// returns.
package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvPrefix starts every FleetACS environment variable.
const EnvPrefix = "FLEETACS_"

// EnvName is the environment variable of a flag: "gateway.listen-addr"
// becomes FLEETACS_GATEWAY_LISTEN_ADDR.
func EnvName(flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return EnvPrefix + strings.ToUpper(r.Replace(flagName))
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// its environment variable, if that is set. It must run after fs.Parse. The
// lookup function is injected so tests need not touch the process
// environment; pass os.LookupEnv in production.
func ApplyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment variable %s: %w", name, e)
		}
	})
	return err
}

// LookupEnv is os.LookupEnv, named here so callers read as configuration.
func LookupEnv(key string) (string, bool) { return os.LookupEnv(key) }
