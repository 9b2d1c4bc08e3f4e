// Package cli is fleetctl's command tree and the dispatcher that runs it.
//
// The tree is hand-written over the standard flag package rather than a CLI
// framework: fleetctl has a handful of commands, and a dispatcher of this
// size is easier to read than a dependency. Groups ("cwmp", "devices",
// later "tasks") hold subcommands; leaves register their own flags and
// return the function that runs them. The gRPC connection flags (-addr,
// -token, -tls, -ca-file, -timeout) are registered by every leaf of an API
// group (connFlags), so they go after the command words like any other
// flag; given before the command words, they are handed to the leaf.
//
// Exit status: 0 on success; 1 when a command fails, with exactly one line
// "fleetctl: <what failed>: <why>" on stderr, so scripts can log it; 2 on a
// usage error, with the message and the command's usage on stderr. Help that
// was asked for (-h, help) goes to stdout with status 0.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Exit statuses of Main.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Env is what a command may touch of the process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// RunFunc runs a leaf command with its arguments left after flags.
type RunFunc func(ctx context.Context, env *Env, args []string) error

// Command is a node of the command tree: a group when it has Commands, a
// leaf when it has Setup.
type Command struct {
	// Name is the word that selects the command.
	Name string
	// Args is the synopsis of the arguments, e.g. "[FILE|-]".
	Args string
	// Short is the one-line description in command lists.
	Short string
	// Long is the description in the command's own help.
	Long string
	// Setup registers the leaf's flags on fs and returns its runner. It
	// must not do anything else: help output calls it too.
	Setup func(fs *flag.FlagSet) RunFunc
	// Commands are the subcommands of a group.
	Commands []*Command
}

func (c *Command) find(name string) *Command {
	for _, s := range c.Commands {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// UsageError is a mistake in how fleetctl was invoked (a missing or extra
// argument); Main answers it with status 2 and the command's usage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a *UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Root returns fleetctl's command tree.
func Root() *Command {
	return &Command{
		Name:  "fleetctl",
		Short: "the FleetACS operator CLI",
		Long: "fleetctl is the FleetACS operator CLI. It queries the device inventory,\n" +
			"runs and watches tasks, watches events, manages API tokens, uploads files\n" +
			"for CPEs and runs campaigns over the public gRPC API, and converts captured CWMP\n" +
			"envelopes to JSON and back.\n" +
			"\n" +
			"Server: -addr host:port, else $FLEETACS_ADDR, else the address fleetacs wrote to\n" +
			"./data/api.addr, else localhost:9300 (said on stderr). Credentials: -token,\n" +
			"else $FLEETACS_TOKEN, else ./data/admin.token, the admin token fleetacs writes\n" +
			"at its first start (sent only to the server of ./data/api.addr); or -cert-file\n" +
			"and -key-file on a server with mutual TLS.\n" +
			"TLS: plaintext to loopback addresses, TLS to any other (-tls, -ca-file).\n" +
			"These flags go before or after the command words: fleetctl -addr HOST:PORT devices list.",
		Commands: []*Command{cwmpCommand(), devicesCommand(), tokensCommand(), tasksCommand(), diagnoseCommand(), eventsCommand(), filesCommand(), presetsCommand(), campaignsCommand()},
	}
}

// Main runs fleetctl with args (without the program name) and returns the
// exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, Root(), args, &Env{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

func run(ctx context.Context, root *Command, args []string, env *Env) int {
	path := []*Command{root}
	cmd := root
	// Connection flags given before the command words ("fleetctl -addr H
	// devices list", as people and the docs write them) go to the leaf,
	// ahead of its own arguments.
	var leading []string
	for len(cmd.Commands) > 0 {
		if len(args) == 0 {
			return usage(env, path, "missing command")
		}
		a := args[0]
		switch {
		case isHelpFlag(a):
			writeHelp(env.Stdout, path)
			return ExitOK
		case a == "help" && cmd == root:
			return help(env, root, args[1:])
		case strings.HasPrefix(a, "-") && a != "-":
			n, err := connFlagArgs(args)
			if err != "" {
				return usage(env, path, err)
			}
			leading = append(leading, args[:n]...)
			args = args[n:]
			continue
		}
		sub := cmd.find(a)
		if sub == nil {
			return usage(env, path, fmt.Sprintf("unknown command %q", a))
		}
		path = append(path, sub)
		cmd = sub
		args = args[1:]
	}

	fs := newFlagSet(path)
	runner := cmd.Setup(fs)
	if len(leading) > 0 {
		args = append(leading, args...)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(env.Stdout, path)
			return ExitOK
		}
		return usage(env, path, err.Error())
	}
	err := runner(ctx, env, fs.Args())
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return usage(env, path, commandName(path)+": "+ue.Msg)
	}
	fmt.Fprintf(env.Stderr, "fleetctl: %s\n", oneLine(err.Error()))
	return ExitFailure
}

// connFlagArgs reads the connection flag that starts args (before the
// command words) and returns how many arguments it takes, 1 or 2 (with
// its value), or why it is not one.
func connFlagArgs(args []string) (int, string) {
	name, hasValue := strings.TrimLeft(args[0], "-"), false
	if i := strings.IndexByte(name, '='); i >= 0 {
		name, hasValue = name[:i], true
	}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	new(connFlags).register(fs)
	f := fs.Lookup(name)
	if f == nil || strings.HasPrefix(args[0], "---") {
		return 0, "unknown flag " + args[0]
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); hasValue || (ok && b.IsBoolFlag()) {
		return 1, ""
	}
	if len(args) < 2 {
		return 0, "flag needs an argument: " + args[0]
	}
	return 2, ""
}

// help answers `fleetctl help [COMMAND...]`.
func help(env *Env, root *Command, args []string) int {
	path := []*Command{root}
	for _, a := range args {
		sub := path[len(path)-1].find(a)
		if sub == nil {
			return usage(env, path, fmt.Sprintf("help: unknown command %q", strings.Join(args, " ")))
		}
		path = append(path, sub)
	}
	writeHelp(env.Stdout, path)
	return ExitOK
}

func isHelpFlag(a string) bool {
	return a == "-h" || a == "-help" || a == "--help"
}

func newFlagSet(path []*Command) *flag.FlagSet {
	fs := flag.NewFlagSet(commandName(path), flag.ContinueOnError)
	// Parse errors and help are printed by run, in fleetctl's format.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// usage reports a usage error in one line, and where the usage of the
// command it concerns is: the help itself would push the error off the
// screen.
func usage(env *Env, path []*Command, msg string) int {
	fmt.Fprintf(env.Stderr, "fleetctl: %s\nRun '%s -help' for usage.\n", oneLine(msg), commandName(path))
	return ExitUsage
}

// commandName is the command's full name, e.g. "fleetctl cwmp decode".
func commandName(path []*Command) string {
	names := make([]string, len(path))
	for i, c := range path {
		names[i] = c.Name
	}
	return strings.Join(names, " ")
}

// writeHelp writes the help of the last command of path.
func writeHelp(w io.Writer, path []*Command) {
	cmd := path[len(path)-1]
	name := commandName(path)
	var b bytes.Buffer
	if cmd.Setup != nil {
		fs := newFlagSet(path)
		cmd.Setup(fs)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		syn := name
		if hasFlags {
			syn += " [flags]"
		}
		if cmd.Args != "" {
			syn += " " + cmd.Args
		}
		fmt.Fprintf(&b, "Usage: %s\n\n%s\n", syn, description(cmd))
		if hasFlags {
			b.WriteString("\nFlags:\n")
			fs.SetOutput(&b)
			fs.PrintDefaults()
		}
		w.Write(b.Bytes())
		return
	}

	fmt.Fprintf(&b, "Usage: %s <command> [arguments]\n\n%s\n\nCommands:\n", name, description(cmd))
	tw := tabwriter.NewWriter(&b, 0, 8, 3, ' ', 0)
	var list func(prefix string, c *Command)
	list = func(prefix string, c *Command) {
		for _, s := range c.Commands {
			if len(s.Commands) > 0 {
				list(prefix+s.Name+" ", s)
				continue
			}
			syn := prefix + s.Name
			if s.Args != "" {
				syn += " " + s.Args
			}
			fmt.Fprintf(tw, "  %s\t%s\n", syn, s.Short)
		}
	}
	list("", cmd)
	if len(path) == 1 {
		fmt.Fprintf(tw, "  %s\t%s\n", "help [COMMAND...]", "Show help for a command")
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nRun \"%s <command> -h\" for the details of a command.\n", name)
	if len(path) == 1 {
		b.WriteString("Exit status: 0 on success, 1 when a command fails, 2 on a usage error.\n")
	}
	w.Write(b.Bytes())
}

func description(c *Command) string {
	if c.Long != "" {
		return c.Long
	}
	return strings.ToUpper(c.Short[:1]) + c.Short[1:] + "."
}

// oneLine keeps a message on one line: an error that quotes a CPE's text
// may hold line breaks, and a failure must be exactly one line on stderr.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}
