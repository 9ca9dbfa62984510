// Command streamer is Streamer's one binary: a node (serve), the reference gateway
// (gateway), the MongoDB puller (puller), the tools that feed and watch a node (publish, watch), and the filter
// tester (match). Run `streamer help` for the
// list of subcommands and `streamer CMD --help` for each one's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's name and
// returns an error to exit non-zero; errUsage means the flags were wrong (exit 2).
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdio stdio) error
}

// stdio carries the process's standard streams so commands can be tested in-process.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"serve", "run a streamer node (embedded in-memory mode unless --redis is given)", runServe},
		{"publish", "publish change events (JSON lines on stdin) to a node", runPublish},
		{"watch", "subscribe as a gateway and print delivered events as JSON lines", runWatch},
		{"gateway", "serve end users over WebSocket and SSE (reference gateway)", runGateway},
		{"puller", "tail MongoDB change streams into the event log (with --redis)", runPuller},
		{"match", "evaluate filters or CEL against documents (JSON lines on stdin)", runMatch},
		{"bench", "load harness: measure throughput, latency and completeness", runBench},
		{"healthcheck", "exit 0 when an admin endpoint answers 2xx (for images without a shell)", runHealthcheck},
		{"version", "print the version, commit and Go version of this build", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, io stdio) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(io.err)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], io)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		}
		fmt.Fprintf(io.err, "streamer %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(io.err, "streamer: unknown command %q\n\n", args[0])
	usage(io.err)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Streamer pushes a database's changes to the subscribers they concern.")
	fmt.Fprintln(w, "\nUsage: streamer <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'streamer <command> --help' for a command's flags.")
}

// newFlagSet returns a flag set that reports errors (and --help) through the command's
// stderr instead of exiting, with a usage text of one line plus the flags.
func newFlagSet(name, synopsis string, io stdio) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.err)
	fs.Usage = func() {
		fmt.Fprintf(io.err, "Usage: streamer %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// usageError prints err, a wrong use of a command, on stderr and returns
// errUsage.
func usageError(sio stdio, err error) error {
	fmt.Fprintln(sio.err, err)
	return errUsage
}

// splitList returns the non-empty, trimmed items of the comma-separated
// list s.
func splitList(s string) []string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

// parseFlags parses args, mapping flag errors to errUsage (the flag package has already
// printed the reason and the usage).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		return errUsage
	}
	return nil
}
