package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/proto"
)

// What the files, campaigns, tokens and presets commands share: the
// -tenant flag, the check of -o, paged listings, JSON and table output and
// the opening of an input file.

// registerTenant registers -tenant, of "the campaign", "the files", ...
func registerTenant(fs *flag.FlagSet, p *string, of string) {
	fs.StringVar(p, "tenant", "default", "`tenant` of "+of+" (\"\": the only tenant the credentials cover)")
}

// checkFormat refuses an output format other than formats.
func checkFormat(output string, formats ...string) error {
	if slices.Contains(formats, output) {
		return nil
	}
	want := formats[len(formats)-1]
	if len(formats) > 1 {
		want = strings.Join(formats[:len(formats)-1], ", ") + " or " + want
	}
	return Usagef("unknown output format %q: want %s", output, want)
}

// listAll gathers the pages of a listing from the server at addr: page
// returns the items at a page token and the next token ("" after the
// last page). A server that hands back the token it was given would make
// the listing endless, so that is an error.
func listAll[T any](what, addr string, page func(token string) ([]T, string, error)) ([]T, error) {
	var all []T
	token := ""
	for {
		items, next, err := page(token)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		if next == token {
			return nil, fmt.Errorf("%s: the server at %s returned the page token it was given: stopping a listing that would not end", what, addr)
		}
		token = next
	}
}

// writeJSONList writes items as an indented JSON array of their protojson
// forms, and a newline.
func writeJSONList[T proto.Message](w io.Writer, what string, items []T) error {
	raw := make([]json.RawMessage, len(items))
	for i, x := range items {
		raw[i] = protoJSON(x)
	}
	b, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeIndented writes v as indented JSON, and a newline.
func writeIndented(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// newTable is the tabwriter of the commands' tables: columns two spaces
// apart.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// openInput opens the file name, or standard input for "-"; done closes
// what it opened.
func openInput(env *Env, name string) (r io.Reader, done func(), err error) {
	if name == "-" {
		return env.Stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

// oneArg parses the command line and returns its one argument, which the
// usage error names ("want one " + what).
func oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := interspersedArgs(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", Usagef("want one %s", what)
	}
	return pos[0], nil
}
