package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// MaxInput bounds what cwmp decode and encode read. CWMP envelopes are small
// (a large GetParameterValuesResponse is a few MiB); the bound keeps a wrong
// file or an endless pipe from eating memory.
const MaxInput = 16 << 20

func cwmpCommand() *Command {
	return &Command{
		Name:  "cwmp",
		Short: "convert CWMP envelopes between SOAP XML and JSON",
		Long: "Convert CWMP (TR-069) SOAP envelopes, e.g. captured from a CPE, to their\n" +
			"JSON form and back. `decode | encode` gives an envelope equivalent to the\n" +
			"original.",
		Commands: []*Command{
			{
				Name:  "decode",
				Args:  "[FILE|-]",
				Short: "Print a CWMP envelope (SOAP XML) as JSON",
				Long: "Read one CWMP SOAP envelope from FILE, or from standard input when FILE is\n" +
					"\"-\" or absent, and print it as JSON: the keys cwmpVersion, namespace (when\n" +
					"not the version's standard one), xmlDeclaration, id (null when the header\n" +
					"has no cwmp:ID), holdRequests and the other SOAP headers, method, unknown\n" +
					"(for a method FleetACS does not implement) and body.\n" +
					"Input is limited to 16 MiB.",
				Setup: func(fs *flag.FlagSet) RunFunc {
					charset := fs.String("charset", "", "the `charset` of the HTTP Content-Type the envelope came with;\n"+
						"it overrides the XML declaration's encoding (default: the declaration's, else UTF-8)")
					return func(ctx context.Context, env *Env, args []string) error {
						return cwmpDecode(ctx, env, *charset, args)
					}
				},
			},
			{
				Name:  "encode",
				Args:  "[FILE|-]",
				Short: "Turn the JSON form of an envelope back into SOAP XML",
				Long: "Read the JSON form of a CWMP envelope (as printed by \"fleetctl cwmp decode\")\n" +
					"from FILE, or from standard input when FILE is \"-\" or absent, and print the\n" +
					"SOAP envelope. Unknown keys, unknown methods and values of the wrong type\n" +
					"are errors that give their line and column.\n" +
					"Input is limited to 16 MiB.",
				Setup: func(*flag.FlagSet) RunFunc { return cwmpEncode },
			},
		},
	}
}

func cwmpDecode(_ context.Context, env *Env, charset string, args []string) error {
	name, data, err := readInput(env, args)
	if err != nil {
		return wrapInput("cwmp decode", name, err)
	}
	if len(data) == 0 {
		// An empty HTTP body is the CPE's empty POST (or the ACS's 204):
		// legal in a session, but there is no envelope to show.
		return fmt.Errorf("cwmp decode %s: empty input: no envelope", name)
	}
	// The decoder's own size limit is for HTTP bodies; here MaxInput
	// already bounds the input.
	e, err := cwmp.DecodeWith(data, cwmp.DecodeOptions{Limits: cwmp.Limits{MaxBytes: MaxInput}, Charset: charset})
	if err != nil {
		return fmt.Errorf("cwmp decode %s: %w", name, err)
	}
	if e == nil {
		return fmt.Errorf("cwmp decode %s: empty input: no envelope", name)
	}
	out, err := cwmp.MarshalEnvelopeJSON(e)
	if err != nil {
		return fmt.Errorf("cwmp decode %s: %w", name, err)
	}
	if _, err := env.Stdout.Write(append(out, '\n')); err != nil {
		return fmt.Errorf("cwmp decode %s: write output: %w", name, err)
	}
	return nil
}

func cwmpEncode(_ context.Context, env *Env, args []string) error {
	name, data, err := readInput(env, args)
	if err != nil {
		return wrapInput("cwmp encode", name, err)
	}
	e, err := cwmp.UnmarshalEnvelopeJSON(data)
	if err != nil {
		return fmt.Errorf("cwmp encode %s: %w", name, err)
	}
	out, err := cwmp.Encode(e)
	if err != nil {
		return fmt.Errorf("cwmp encode %s: %w", name, err)
	}
	if !bytes.HasSuffix(out, []byte{'\n'}) {
		out = append(out, '\n')
	}
	if _, err := env.Stdout.Write(out); err != nil {
		return fmt.Errorf("cwmp encode %s: write output: %w", name, err)
	}
	return nil
}

// readInput reads the one optional FILE argument ("-" or none: standard
// input), at most MaxInput bytes. name is what messages call the input.
func readInput(env *Env, args []string) (name string, data []byte, err error) {
	if len(args) > 1 {
		return "", nil, Usagef("too many arguments: want at most one FILE, got %d", len(args))
	}
	name = "-"
	if len(args) == 1 {
		name = args[0]
	}
	var r io.Reader
	if name == "-" {
		name = "stdin"
		r = env.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return name, nil, err
		}
		defer f.Close()
		r = f
	}
	data, err = io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return name, nil, err
	}
	if len(data) > MaxInput {
		return name, nil, fmt.Errorf("input is larger than the %d MiB limit", MaxInput>>20)
	}
	return name, data, nil
}

// wrapInput prefixes a readInput error with the command and input name;
// usage errors pass through untouched, and the file name is not repeated
// from an *fs.PathError.
func wrapInput(cmd, name string, err error) error {
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s %s: %s: %w", cmd, name, pe.Op, pe.Err)
	}
	return fmt.Errorf("%s %s: %w", cmd, name, err)
}
