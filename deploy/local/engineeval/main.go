// Command engineeval measures candidate storage engines for the local store
// on the same events, in one process (decision 0026): today's SQLite store
// (consumer/sink/local) and VictoriaLogs' storage (lib/logstorage),
// embedded. It is an evaluation tool: its own module, outside go.work, so
// that VictoriaLogs never becomes a dependency of the product modules.
//
//	cd deploy/local/engineeval && GOWORK=off go run . ingest -events 100000 -runs 3
//	cd deploy/local/engineeval && GOWORK=off go run . query -events 1000000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	vmlogger "github.com/VictoriaMetrics/VictoriaMetrics/lib/logger"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/deploy/local/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "engineeval:", err)
		os.Exit(1)
	}
}

const usage = `usage: engineeval ingest [flags]   CPU, wall time and bytes on disk per engine
       engineeval query [flags]    query latency on both stores (built once in -dir)
Run "engineeval <command> -h" for the flags.`

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stdout, usage)
		return errors.New("no command")
	}
	// VictoriaLogs logs through VictoriaMetrics' logger, configured by its
	// own flags on the global flag set; only warnings and errors matter here.
	// Its libraries also insist that the global flag set was parsed.
	if err := flag.CommandLine.Parse(nil); err != nil {
		return err
	}
	if err := flag.CommandLine.Set("loggerLevel", "WARN"); err != nil {
		return fmt.Errorf("configure VictoriaMetrics logger: %w", err)
	}
	vmlogger.Init()
	switch args[0] {
	case "ingest":
		return runIngest(ctx, args[1:], stdout)
	case "query":
		return runQuery(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stdout, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

// common are the corpus flags of both commands.
type common struct {
	events, variants int
	mix, fixtures    string
	dir              string
}

func (c *common) register(fs *flag.FlagSet, events int) {
	fs.IntVar(&c.events, "events", events, "events per run")
	fs.IntVar(&c.variants, "variants", 5000, "distinct processed events the corpus is made of (each event gets its own auditID, times and rare word)")
	fs.StringVar(&c.mix, "mix", "metadata=100,request=0,requestresponse=0", "level mix, as make bench's --mix (default mix: metadata=70,request=20,requestresponse=10)")
	fs.StringVar(&c.fixtures, "fixtures", "", "testdata/public-audit (default: found from the working directory upwards)")
}

func (c *common) corpus() (*corpus, error) {
	mix, err := bench.ParseMix(c.mix)
	if err != nil {
		return nil, err
	}
	dir := c.fixtures
	if dir == "" {
		if dir, err = bench.FindFixtures("."); err != nil {
			return nil, err
		}
	}
	return newCorpus(dir, mix, c.variants, c.events, 42)
}

func runIngest(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	var c common
	c.register(fs, 100_000)
	engines := fs.String("engines", strings.Join([]string{engineNull, engineFlatten, engineSQLite, engineVL}, ","), "engines to measure, comma-separated: "+strings.Join(allEngines, ", "))
	runs := fs.Int("runs", 3, "runs per engine (interleaved: run 1 of every engine, then run 2, ...)")
	batch := fs.Int("batch", 500, "events per write (the consumer's batch)")
	vlSync := fs.String("vl-sync", syncNone, "VictoriaLogs durability: none (MustAddRows only) or batch (flush and fsync every batch through a partition snapshot)")
	fs.StringVar(&c.dir, "dir", "", "where the stores are written (default: a new temp dir, removed at the end)")
	profDir := fs.String("cpuprofile", "", "write a CPU profile of each engine's runs into this directory (<engine>.prof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cor, err := c.corpus()
	if err != nil {
		return err
	}
	dir, cleanup, err := workDir(c.dir)
	if err != nil {
		return err
	}
	defer cleanup()
	names := strings.Split(*engines, ",")
	fmt.Fprintf(stdout, "engineeval ingest: %d events (mean %d B, mix %s), batches of %d, vl-sync %s, %d runs; GOMAXPROCS %d; load %s\n",
		c.events, cor.meanSize(), c.mix, *batch, *vlSync, *runs, runtime.GOMAXPROCS(0), loadAvg())
	var results []ingestResult
	for r := 1; r <= *runs; r++ {
		for _, name := range names {
			d := filepath.Join(dir, name+"-"+strconv.Itoa(r))
			stopProfile, err := startProfile(*profDir, name+"-"+strconv.Itoa(r))
			if err != nil {
				return err
			}
			res, err := ingest(ctx, cor, name, d, *vlSync, c.events, *batch, r)
			stopProfile()
			if err != nil {
				return err
			}
			results = append(results, res)
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
	}
	printIngest(stdout, results)
	fmt.Fprintf(stdout, "load at the end: %s\n", loadAvg())
	return nil
}

func runQuery(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	var c common
	c.register(fs, 1_000_000)
	reps := fs.Int("reps", 8, "runs of each query per engine (different windows and values)")
	fs.StringVar(&c.dir, "dir", "", "where the two stores are built, or reused when already built for the same -events (default: a new temp dir, removed at the end)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, cleanup, err := workDir(c.dir)
	if err != nil {
		return err
	}
	defer cleanup()
	marker := filepath.Join(dir, "built-"+strconv.Itoa(c.events))
	if _, err := os.Stat(marker); err != nil {
		cor, err := c.corpus()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "building both stores of %d events (mean %d B) in %s; load %s\n", c.events, cor.meanSize(), dir, loadAvg())
		var built []ingestResult
		for _, name := range []string{engineSQLite, engineVL} {
			res, err := ingest(ctx, cor, name, filepath.Join(dir, name), syncNone, c.events, 500, 1)
			if err != nil {
				return err
			}
			built = append(built, res)
		}
		printIngest(stdout, built)
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			return err
		}
	}
	sq, err := local.Open(filepath.Join(dir, engineSQLite, "events.db"), local.Options{})
	if err != nil {
		return err
	}
	defer sq.Close()
	vl := logstorage.MustOpenStorage(filepath.Join(dir, engineVL, "vlogs"), &logstorage.StorageConfig{Retention: 10 * 365 * 24 * time.Hour})
	defer vl.MustClose()
	fmt.Fprintf(stdout, "queries on %d events, %d reps each, alternating engines; load %s\n", c.events, *reps, loadAvg())
	rs, err := runQueries(ctx, sq, vl, *reps, corpusSpan)
	printQueries(stdout, rs)
	fmt.Fprintf(stdout, "load at the end: %s\n", loadAvg())
	return err
}

// startProfile starts a CPU profile into dir/name.prof; "" profiles nothing.
func startProfile(dir, name string) (func(), error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, name+".prof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// workDir returns dir, or a new temp dir that cleanup removes.
func workDir(dir string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, os.MkdirAll(dir, 0o750)
	}
	d, err := os.MkdirTemp("", "engineeval-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { _ = os.RemoveAll(d) }, nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
