package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/migrate"
)

const migrateUsage = `Usage: %s --from PATH --to PATH [flags]

Copies every event of a local store into another store, normally a SQLite
store into a VictoriaLogs one (decision 0026), event for event and byte for
byte. The destination dedups as it always does, so running it again, or
resuming it with --after, stores nothing twice. Stop the consumers that use
either store first (a VictoriaLogs store is locked by its process); the
events that arrive meanwhile wait on Kafka. Then start the consumer with
local.engine and local.path naming the destination.

Progress goes to stderr every --report interval with the position to resume
from; the command fails if the destination could not store an event (the
source keeps it).

Flags:
  --from PATH           the source store (must exist)
  --from-engine ENGINE  sqlite (the only engine that exports so far)
  --to PATH             the destination store (created when missing)
  --to-engine ENGINE    vlogs (default) or sqlite
  --after POSITION      resume after this source position (from a report)
  --batch N             events per read and write (default 1000)
  --report DURATION     progress interval (default 5s)
`

const migrateDataDirUsage = `  --data-dir DIR        the all-in-one's data directory: --from and --to default
                        to its store of each engine (store/events.db, store/vlogs)
`

// MigrateCommand is "store migrate" (consumer store migrate, auditpipe
// store migrate): copies a local store into another engine's.
type MigrateCommand struct {
	// Name is the command as typed ("consumer store migrate").
	Name string
	// Layout, when set, adds --data-dir: the all-in-one's directory, where
	// Layout names each engine's store (the defaults of --from and --to).
	Layout func(dataDir, engine string) string
	// DataDir is --data-dir's default.
	DataDir string
}

// Run implements cli.Func.
func (c MigrateCommand) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("store migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		from       = fs.String("from", "", "")
		fromEngine = fs.String("from-engine", eventstore.EngineSQLite, "")
		to         = fs.String("to", "", "")
		toEngine   = fs.String("to-engine", eventstore.EngineVictoriaLogs, "")
		dataDir    = c.DataDir
		opts       migrate.Options
	)
	if c.Layout != nil {
		fs.StringVar(&dataDir, "data-dir", c.DataDir, "")
	}
	fs.StringVar(&opts.After, "after", "", "")
	fs.IntVar(&opts.BatchSize, "batch", 1000, "")
	fs.DurationVar(&opts.ReportEvery, "report", 5*time.Second, "")
	usageErr := func(err error) error { return fmt.Errorf("store migrate: %w (see store migrate --help)", err) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage := fmt.Sprintf(migrateUsage, c.Name)
			if c.Layout != nil {
				usage += migrateDataDirUsage
			}
			_, werr := io.WriteString(stdout, usage)
			return werr
		}
		return usageErr(err)
	}
	if c.Layout != nil {
		if *from == "" {
			*from = c.Layout(dataDir, *fromEngine)
		}
		if *to == "" {
			*to = c.Layout(dataDir, *toEngine)
		}
	}
	switch {
	case fs.NArg() > 0:
		return usageErr(fmt.Errorf("unexpected arguments %q", fs.Args()))
	case *from == "" || *to == "":
		return usageErr(errors.New("--from and --to are required"))
	case *from == *to:
		return usageErr(errors.New("--from and --to name the same store"))
	case *fromEngine != eventstore.EngineSQLite:
		return usageErr(fmt.Errorf("--from-engine %q: only sqlite stores can be read from so far", *fromEngine))
	case opts.BatchSize < 1 || opts.BatchSize > eventstore.MaxLimit:
		return usageErr(fmt.Errorf("--batch: want 1 to %d, got %d", eventstore.MaxLimit, opts.BatchSize))
	}
	// Opening a SQLite path creates a store: a mistyped source must not
	// migrate an empty one.
	if _, err := os.Stat(*from); err != nil {
		return fmt.Errorf("store migrate: source: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src, err := OpenStore(LocalConfig{Engine: *fromEngine, Path: *from}, eventstore.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("store migrate: open the source %s: %w", *from, err)
	}
	defer src.Close()
	exp, ok := src.(eventstore.Exporter)
	if !ok {
		return fmt.Errorf("store migrate: the %s engine cannot export its events", *fromEngine)
	}
	dst, err := OpenStore(LocalConfig{Engine: *toEngine, Path: *to}, eventstore.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("store migrate: open the destination %s: %w", *to, err)
	}
	opts.Report = func(p migrate.Progress) {
		rate := float64(p.Read) / max(p.Elapsed.Seconds(), 1e-9)
		fmt.Fprintf(stderr, "store migrate: %d of %d read (%.0f/s): %d stored, %d duplicates, %d reused, %d not storable; resume with --after %q\n",
			p.Read, p.Total, rate, p.Inserted, p.Duplicates, p.Reused, p.Invalid, p.Position)
	}
	p, err := migrate.Run(ctx, exp, dst, opts)
	if cerr := dst.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("store migrate: close the destination: %w", cerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrated %d events from %s (%s) to %s (%s) in %s: %d stored, %d already there\n",
		p.Read, *from, *fromEngine, *to, *toEngine, p.Elapsed.Round(time.Millisecond), p.Inserted, p.Duplicates)
	return nil
}
