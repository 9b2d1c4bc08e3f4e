package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// testTree is a tree shaped like the one fleetctl will grow (a gRPC group
// with a flagged leaf), to check the dispatcher apart from the cwmp
// commands.
func testTree(got *[]string) *Command {
	return &Command{
		Name:  "fleetctl",
		Short: "test tree",
		Commands: []*Command{{
			Name:  "devices",
			Short: "manage devices",
			Commands: []*Command{
				{
					Name: "get", Args: "ID", Short: "show a device",
					Setup: func(fs *flag.FlagSet) RunFunc {
						output := fs.String("o", "table", "output `format`: table or json")
						return func(_ context.Context, env *Env, args []string) error {
							if len(args) != 1 {
								return Usagef("want one device ID")
							}
							*got = append(*got, *output, args[0])
							return nil
						}
					},
				},
				{
					Name: "fail", Short: "fail with a multi-line error",
					Setup: func(*flag.FlagSet) RunFunc {
						return func(context.Context, *Env, []string) error {
							return errors.New("get device: CPE said \"a\nb\r\nc\"")
						}
					},
				},
			},
		}},
	}
}

func TestDispatch(t *testing.T) {
	var got []string
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}

	if code := run(context.Background(), testTree(&got), []string{"devices", "get", "-o", "json", "00D09E-HGW-S1"}, env); code != ExitOK {
		t.Fatalf("exit status %d, stderr %q", code, stderr.String())
	}
	if want := []string{"json", "00D09E-HGW-S1"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("leaf saw %v, want %v", got, want)
	}

	stderr.Reset()
	if code := run(context.Background(), testTree(&got), []string{"devices", "fail"}, env); code != ExitFailure {
		t.Fatalf("exit status %d", code)
	}
	if want := `fleetctl: get device: CPE said "a\nb\nc"` + "\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}

	stderr.Reset()
	if code := run(context.Background(), testTree(&got), []string{"devices", "get"}, env); code != ExitUsage {
		t.Fatalf("exit status %d", code)
	}
	wantUsage := "fleetctl: fleetctl devices get: want one device ID\n" +
		"Run 'fleetctl devices get -help' for usage.\n"
	if stderr.String() != wantUsage {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), wantUsage)
	}

	stdout.Reset()
	if code := run(context.Background(), testTree(&got), []string{"help"}, env); code != ExitOK {
		t.Fatalf("exit status %d", code)
	}
	if !strings.Contains(stdout.String(), "  devices get ID      show a device\n") {
		t.Errorf("help does not list the nested leaf:\n%s", stdout.String())
	}
}
