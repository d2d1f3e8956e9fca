package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/cli"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/telemetry"
)

const usage = `Usage: auditbench [flags]

Measures every stage of auditpipe side by side with a pass-through baseline
(the same records through the same Kafka client and broker, no processing):

  franz      no stage: a plain franz-go consume → produce pass-through of the
             same records; every other unit is also reported against it
             ("vs franz"), so a slow client cannot hide behind its own baseline
  producer   webhook POSTs of EventList batches until Kafka acknowledged them
             (baseline: the same records, same batches, produced directly)
  processor  raw → events through the real pipeline handler under the real
             sarama consumer group (baseline: consume → produce unchanged)
  consumer   events → local store through the real group handler
             (baseline: consume → produce unchanged)
  consumer-cls
             events → local CLS server through the real group handler and
             CLS sink (official SDK, LZ4, signed) (baseline: the same)
  e2e        webhook POST → queryable through the query API, the whole
             all-in-one pipeline; latency per event (baseline: the same three
             Kafka hops with no processing); "paced" offers a fixed rate

on the embedded broker, and also on the Kafka cluster named by --kafka
(default $AUDITPIPE_TEST_KAFKA_BROKERS). Each unit runs in its own
subprocess (its own peak RSS), does warm-up rounds and measured rounds of a
fixed event count on fresh topics, and reports min and median.

Output: a table on stdout (or the JSON report with --json), and the JSON
report in --out/<UTC time>.json.

Flags:
`

// Main is the auditbench command: it parses args, runs the benchmark and
// writes the report. The subprocesses it starts are the same binary with
// --unit.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := DefaultOptions()
	fs := flag.NewFlagSet("auditbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.Events, "events", o.Events, "events per round and unit")
	fs.IntVar(&o.Warmup, "warmup", o.Warmup, "warm-up rounds per unit (not reported)")
	fs.IntVar(&o.Rounds, "rounds", o.Rounds, "measured rounds per unit")
	fs.IntVar(&o.BatchSize, "batch", o.BatchSize, "events per webhook POST and per baseline Produce call")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "concurrent webhook clients (and producers in baselines)")
	fs.IntVar(&o.GroupBatch, "group-batch", o.GroupBatch, "records per consumer-group batch (MaxBatch)")
	partitions := fs.Int("partitions", int(o.Partitions), "partitions of every topic")
	fs.IntVar(&o.PacedRate, "paced-rate", o.PacedRate, "offered events/s of the paced end-to-end variant (0 skips it)")
	mix := fs.String("mix", o.Mix.String(), "share of each audit level in percent")
	fs.StringVar(&o.Fixtures, "fixtures", "", "testdata/public-audit directory (default: found from the working directory upwards)")
	stages := fs.String("stages", strings.Join(o.Stages, ","), "stages to measure, comma-separated")
	kafkaBrokers := fs.String("kafka", os.Getenv(kafkatest.BrokersEnv), "comma-separated bootstrap addresses of an external Kafka cluster to measure next to the embedded broker (default $"+kafkatest.BrokersEnv+")")
	fs.StringVar(&o.StoreEngine, "store-engine", o.StoreEngine, "local store engine of the consumer and e2e stages: vlogs or sqlite")
	fs.BoolVar(&o.SyncWrites, "sync-writes", o.SyncWrites, "embedded broker fsyncs before acknowledging, as make run does")
	fs.DurationVar(&o.RoundTimeout, "round-timeout", o.RoundTimeout, "give up on a round after this long")
	fs.StringVar(&o.CPUProfileDir, "cpuprofile", "", "directory for a CPU profile of each unit's measured rounds (go tool pprof)")
	fs.StringVar(&o.MemProfileDir, "memprofile", "", "directory for a heap profile of each unit, taken at the largest live heap of its measured rounds (go tool pprof)")
	jsonOut := fs.Bool("json", false, "print the JSON report on stdout instead of the table")
	out := fs.String("out", "bench/results", "directory for the JSON report (empty: do not write one)")
	inProcess := fs.Bool("in-process", false, "run every unit in this process (peak RSS is then process-wide)")
	logLevel := fs.String("log-level", "warn", "log level on stderr: debug, info, warn, error")
	unit := fs.String(UnitFlag, "", "internal: run one unit given as JSON and print its result")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.Partitions = int32(*partitions)
	var err error
	if o.Mix, err = ParseMix(*mix); err != nil {
		return err
	}
	o.Stages = cli.SplitList(*stages)
	o.KafkaBrokers = cli.SplitList(*kafkaBrokers)
	if o.Fixtures == "" {
		if o.Fixtures, err = FindFixtures("."); err != nil {
			return err
		}
	}
	if err := o.Validate(); err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	if *unit != "" {
		return RunChild(ctx, o, *unit, logger)
	}

	runner := InProcess(o, logger)
	if !*inProcess {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("locate own binary for unit subprocesses: %w", err)
		}
		runner = Subprocess(exe, childArgs(args), stderr)
	}
	rep, runErr := Run(ctx, o, runner, logger)
	if rep == nil {
		return runErr
	}
	if *out != "" {
		path := ResultFile(*out, rep.Started)
		if err := writeReport(path, rep); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Fprintf(stderr, "auditbench: report written to %s\n", path)
	}
	if *jsonOut {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	return errors.Join(runErr, err)
}

// childArgs are the parent's flags without the ones only the parent uses.
func childArgs(args []string) []string {
	var out []string
	skipNext := false
	for _, a := range args {
		if skipNext {
			skipNext = false
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(name, "=")
		switch name {
		case "json", "in-process":
			continue
		case "out":
			skipNext = !hasValue
			continue
		}
		out = append(out, a)
	}
	return out
}

func writeReport(path string, rep *Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.WriteJSON(f); err != nil {
		f.Close()
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return f.Close()
}
