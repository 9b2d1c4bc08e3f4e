package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// readmeMarker precedes the README's distributed example.
const readmeMarker = "<!-- The block below is run by cmd/fleetacs/readme_test.go"

// readmeExample returns the command lines of the README's distributed
// example (continuation lines joined, comments dropped) and the text
// before it.
func readmeExample(t *testing.T) (cmds [][]string, before string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, readmeMarker)
	if i < 0 {
		t.Fatalf("README.md has no %q", readmeMarker)
	}
	before = text[:i]
	rest := text[i:]
	start := strings.Index(rest, "```sh\n")
	end := strings.Index(rest[start+6:], "```")
	if start < 0 || end < 0 {
		t.Fatal("no ```sh block after the marker")
	}
	block := strings.ReplaceAll(rest[start+6:start+6+end], "\\\n", " ")
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		// NAME=value fields before the command set its environment.
		n := 0
		for n < len(fields) && envAssignment.MatchString(fields[n]) {
			n++
		}
		if n == len(fields) || fields[n] != "fleetacs" {
			t.Fatalf("README example line is not a fleetacs command: %q", line)
		}
		cmds = append(cmds, append(fields[:n:n], fields[n+1:]...))
	}
	return cmds, before
}

// envAssignment is a NAME=value word before a command.
var envAssignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// TestREADMEDistributedExample runs the README's distributed example as it
// is written, with only its placeholders filled (private Redis and
// FerretDB, free loopback ports) and settings that keep tests apart, then
// drives simulated CPEs through its gateway and finds them in its
// inventory (issue 8 item 16: the example could not start).
func TestREADMEDistributedExample(t *testing.T) {
	if testing.Short() {
		t.Skip("three processes on Redis and FerretDB; make test runs it")
	}
	cmds, before := readmeExample(t)
	if len(cmds) < 3 {
		t.Fatalf("README example has %d commands, want inventory, sessions and gateway", len(cmds))
	}

	// Every placeholder is explained above the block.
	vars := map[string]string{}
	varRE := regexp.MustCompile(`\$([A-Z_]+)`)
	for _, c := range cmds {
		for _, m := range varRE.FindAllStringSubmatch(strings.Join(c, " "), -1) {
			if !strings.Contains(before, "`"+m[1]+"`") {
				t.Errorf("placeholder $%s is not explained before the example", m[1])
			}
			vars[m[1]] = ""
		}
	}
	// Secrets go in the environment: every user of the host reads a
	// process's command line.
	for _, c := range cmds {
		for _, a := range c {
			if !envAssignment.MatchString(a) && strings.Contains(a, "$CPE_PASSWORD") {
				t.Errorf("the example puts the CPE password on the command line (%s), where every user of the host reads it", a)
			}
		}
	}
	redisAddr, redisDB := testenv.RedisDB(t)
	const user, password = "readme-cpe", "readme-secret"
	// The files the placeholders explain how to make.
	secrets := t.TempDir()
	internalToken := filepath.Join(secrets, "internal.token")
	if err := secretbox.WriteFileExclusive(internalToken, []byte("readme-internal-token-0123456789abcdef0123\n")); err != nil {
		t.Fatal(err)
	}
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(secrets, "secrets.key")
	if err := secretbox.WriteFileExclusive(keyFile, secretbox.FormatKeyFile(key)); err != nil {
		t.Fatal(err)
	}
	fill := map[string]string{
		"REDIS": redisAddr, "MONGODB_URI": testenv.MongoURI(t), "HOST": "127.0.0.1",
		"CPE_USER": user, "CPE_PASSWORD": password,
		"INTERNAL_TOKEN": internalToken, "SECRETS_KEY": keyFile,
	}
	for v := range vars {
		if _, ok := fill[v]; !ok {
			t.Fatalf("the test does not know README placeholder $%s", v)
		}
	}
	// Each port of the example becomes a free loopback port.
	ports := map[string]string{}
	portRE := regexp.MustCompile(`(=|\$HOST):(\d{4,5})\b`)
	isolation := []string{
		fmt.Sprintf("-redis.db=%d", redisDB), "-redis.prefix=" + testenv.UniqueName(t),
		"-inventory.mongodb-database=" + testenv.MongoDatabase(t),
		"-log.level=warn", "-gateway.drain-grace=0s", "-sessions.drain-timeout=1ms",
	}
	flagValue := func(args []string, name string) string {
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
				return v
			}
		}
		return ""
	}
	type process struct {
		target string
		env    []string
		args   []string
		c      *child
	}
	var procs []*process
	for _, c := range cmds {
		args := make([]string, len(c))
		for i, a := range c {
			a = portRE.ReplaceAllStringFunc(a, func(m string) string {
				sub := portRE.FindStringSubmatch(m)
				p, ok := ports[sub[2]]
				if !ok {
					p = fmt.Sprint(testenv.FreePort(t))
					ports[sub[2]] = p
				}
				return sub[1] + ":" + p
			})
			a = strings.ReplaceAll(a, "=:", "=127.0.0.1:")
			for v, val := range fill {
				a = strings.ReplaceAll(a, "$"+v, val)
			}
			args[i] = a
		}
		var env []string
		for len(args) > 0 && envAssignment.MatchString(args[0]) {
			env, args = append(env, args[0]), args[1:]
		}
		target := args[len(args)-1]
		// Settings that keep this test's data apart go before the target;
		// a flag given twice takes its last value.
		args = append(append(args[:len(args)-1:len(args)-1], isolation...), target)
		procs = append(procs, &process{target: target, env: env, args: args})
	}
	for _, p := range procs {
		prefix := ""
		for _, e := range p.env {
			name, value, _ := strings.Cut(e, "=")
			if prefix != "" {
				prefix += " && "
			}
			prefix += "export " + name + "='" + strings.ReplaceAll(value, "'", `'\''`) + "'"
		}
		p.c = startChild(t, prefix, p.args...)
	}

	var gatewayAddr, inventoryAddr, inventoryDir string
	for _, p := range procs {
		switch p.target {
		case "gateway":
			gatewayAddr = flagValue(p.args, "gateway.listen-addr")
		case "inventory":
			inventoryAddr = flagValue(p.args, "server.grpc-addr")
			inventoryDir = p.c.cmd.Dir
		}
	}
	if gatewayAddr == "" || inventoryAddr == "" {
		t.Fatalf("the example runs no gateway or no inventory: %v", cmds)
	}
	testenv.WaitFor(t, 90*time.Second, func() error {
		for _, p := range procs {
			p.c.alive(t)
			if err := httpReady("http://" + flagValue(p.args, "server.http-addr") + "/readyz"); err != nil {
				return fmt.Errorf("%s: %w", p.target, err)
			}
		}
		return nil
	})

	s, err := sim.New(sim.Config{
		URL: "http://" + gatewayAddr + "/", Model: sim.TR181,
		Devices: 3, Seed: 11, SerialPrefix: "README", Username: user, Password: password,
		BootStorm: true, Concurrency: 3, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.SessionsOK < 3 || sum.SessionsFailed > 0 {
		var b strings.Builder
		sum.WriteText(&b)
		for _, p := range procs {
			b.WriteString("--- " + p.target + ":\n" + p.c.output())
		}
		t.Fatalf("CPEs through the README's gateway:\n%s", b.String())
	}

	cc, err := grpc.NewClient(inventoryAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// The admin token the inventory's first start wrote, as the README says.
	token, err := os.ReadFile(filepath.Join(inventoryDir, "data", "admin.token"))
	if err != nil {
		t.Fatalf("the README's inventory wrote no admin token: %v", err)
	}
	list, err := inventoryv1.NewInventoryServiceClient(cc).ListDevices(withToken(ctx, strings.TrimSpace(string(token))),
		&inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	var serials []string
	for _, d := range list.GetDevices() {
		serials = append(serials, d.GetDeviceId().GetSerialNumber())
	}
	for _, d := range s.Devices() {
		if !slices.Contains(serials, d.ID().SerialNumber) {
			t.Errorf("device %s not in the README's inventory (it has %v)", d.ID().SerialNumber, serials)
		}
	}
}
