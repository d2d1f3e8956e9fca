// Package cli is the one home of the stage binaries' command scaffolding:
// subcommand dispatch with one help style, config loading (strict YAML,
// ${ENV} expansion, flags over the file), the common flags, the logger,
// version and build info, signals (SIGTERM drains, SIGHUP reloads) and the
// metrics and health server. A stage's main only names its commands and
// builds its app (docs/decisions/0020-stage-contract.md).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
)

// Func runs one subcommand. Help goes to stdout; an error is returned, not
// printed: the program prints it once, as "<program>: <err>".
type Func func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Command is a subcommand. A command with Sub dispatches on its first
// argument ("policy test", "groups list").
type Command struct {
	Name    string
	Summary string // one line for the command list
	Run     Func
	Sub     []Command
}

// Program is a binary with subcommands.
type Program struct {
	Name string // "processor"
	// Doc is the paragraph of help before the command list.
	Doc      string
	Commands []Command
	// Default is the command run when the first argument is a flag or
	// absent ("run").
	Default string
}

// ErrHelp is returned when help was asked for and printed: not a failure.
var ErrHelp = flag.ErrHelp

// Main runs the program with the process's arguments and standard streams,
// canceling the context on SIGINT or SIGTERM, and exits: 0 on success or
// help, 1 with the error printed once on stderr.
func (p *Program) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := p.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(ExitCode(p.Name, err, os.Stderr))
}

// ExitCode prints err once as "<name>: <err>" and returns the process exit
// code: 0 for nil or ErrHelp, 1 otherwise.
func ExitCode(name string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// Run dispatches args to a command.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, p.Name, p.Doc, p.Commands, p.Default, args, stdout, stderr)
}

func dispatch(ctx context.Context, name, doc string, cmds []Command, def string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) {
		if def == "" {
			printCommands(stdout, name, doc, cmds)
			if len(args) == 0 {
				return ErrHelp
			}
			return fmt.Errorf("want a command, got %q (see %s help)", args[0], name)
		}
		args = append([]string{def}, args...)
	}
	if isHelp(args[0]) {
		if len(args) > 1 {
			// "help run" is "run --help".
			return dispatch(ctx, name, doc, cmds, "", []string{args[1], "--help"}, stdout, stderr)
		}
		printCommands(stdout, name, doc, cmds)
		return ErrHelp
	}
	for _, c := range cmds {
		if c.Name != args[0] {
			continue
		}
		if len(c.Sub) > 0 {
			return dispatch(ctx, name+" "+c.Name, c.Summary, c.Sub, "", args[1:], stdout, stderr)
		}
		return c.Run(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q (see %s help)", args[0], name)
}

func isHelp(a string) bool { return a == "help" || a == "-h" || a == "--help" || a == "-help" }

func printCommands(w io.Writer, name, doc string, cmds []Command) {
	if doc != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(doc))
	}
	fmt.Fprintf(w, "Usage:\n  %s <command> [flags]\n\nCommands:\n", name)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	sorted := append([]Command(nil), cmds...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Name, c.Summary)
	}
	fmt.Fprintf(tw, "  help\tthis help\n")
	_ = tw.Flush()
	fmt.Fprintf(w, "\nRun \"%s <command> --help\" for the flags of a command.\n", name)
}

// NewFlagSet returns a flag set for a command whose help (usage, a blank
// line, then the flags) goes to stdout only when asked for. Parse it with
// Parse, so that a bad flag is reported once, by the caller.
func NewFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(stdout)
		defer fs.SetOutput(io.Discard)
		if usage != "" {
			fmt.Fprintf(stdout, "%s\n\n", strings.TrimSpace(usage))
		}
		fmt.Fprintln(stdout, "Flags:")
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args with fs (from NewFlagSet). -h/--help prints the
// usage to stdout and returns ErrHelp; a bad flag is an error naming it.
// Positional arguments are refused unless allowArgs.
func Parse(fs *flag.FlagSet, args []string, allowArgs bool) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return ErrHelp
	}
	if err != nil {
		return fmt.Errorf("%s: %w (see --help)", fs.Name(), err)
	}
	if !allowArgs && fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see --help)", fs.Name(), fs.Arg(0))
	}
	return nil
}

// SplitList splits a comma-separated list, trimming spaces and dropping
// empty elements: the one parser of list flags and list environment
// variables.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ListValue is a flag.Value for a list: each use of the flag appends its
// comma-separated elements, so "--x a,b" and "--x a --x b" are the same.
// The first use replaces the list's initial value (a default or the
// config file's).
type ListValue struct {
	list *[]string
	set  bool
}

// NewListValue binds a list flag to *list.
func NewListValue(list *[]string) *ListValue { return &ListValue{list: list} }

// String is the list, comma-joined.
func (l *ListValue) String() string {
	if l == nil || l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

// Set appends v's elements.
func (l *ListValue) Set(v string) error {
	if !l.set {
		*l.list = nil
		l.set = true
	}
	*l.list = append(*l.list, SplitList(v)...)
	return nil
}
