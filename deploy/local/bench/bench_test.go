package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tinyOptions run every stage and variant with a few dozen events: enough
// to check that the harness measures what it says, far too few for figures.
func tinyOptions(tb testing.TB) Options {
	tb.Helper()
	fixtures, err := FindFixtures(".")
	require.NoError(tb, err)
	o := DefaultOptions()
	o.Events, o.Warmup, o.Rounds = 60, 0, 1
	o.BatchSize, o.GroupBatch, o.Concurrency, o.Partitions = 20, 25, 2, 2
	o.PacedRate = 1200
	o.Fixtures = fixtures
	o.SyncWrites = false
	o.RoundTimeout = time.Minute
	o.TempDir = tb.TempDir()
	return o
}

// TestRunCountsAddUp runs the whole harness in process on the embedded
// broker and checks the report's shape and counts, never its speed.
func TestRunCountsAddUp(t *testing.T) {
	o := tinyOptions(t)
	rep, err := Run(context.Background(), o, InProcess(o, nil), discard())
	require.NoError(t, err)

	units := Units(o)
	require.Len(t, units, 12, "franz + 4 stages x (baseline, stage) + e2e (baseline, stage, paced)")
	require.Len(t, rep.Results, len(units))
	for i, res := range rep.Results {
		require.Equal(t, units[i], res.Unit)
		require.Empty(t, res.Error, res.Unit.String())
		require.Len(t, res.Rounds, o.Rounds, res.Unit.String())
		for _, r := range res.Rounds {
			// Every generated event is counted exactly once: the TKE
			// policy keeps all of them, the store holds each once.
			require.Equal(t, o.Events, r.Events, res.Unit.String())
			require.Positive(t, r.Bytes, res.Unit.String())
			require.Positive(t, r.Seconds, res.Unit.String())
			require.GreaterOrEqual(t, r.CPUSeconds, 0.0, res.Unit.String())
			require.Positive(t, r.P50Ms, res.Unit.String())
			require.GreaterOrEqual(t, r.P99Ms, r.P50Ms, res.Unit.String())
		}
		s := res.Summary
		require.Positive(t, s.EventsPerSec.Min, res.Unit.String())
		require.GreaterOrEqual(t, s.EventsPerSec.Median, s.EventsPerSec.Min, res.Unit.String())
		require.Positive(t, s.MBPerSec.Median, res.Unit.String())
		require.Positive(t, res.PeakRSSBytes, res.Unit.String())
		require.NotEmpty(t, res.LatencyOf)
		if res.Variant == VariantStage {
			require.NotNil(t, res.VsBaseline, res.Unit.String())
			require.Positive(t, res.VsBaseline.EventsPerSec)
		} else {
			require.Nil(t, res.VsBaseline, res.Unit.String())
		}
		if res.Stage == StageFranz {
			require.Nil(t, res.VsFranz)
		} else {
			require.NotNil(t, res.VsFranz, res.Unit.String())
			require.Positive(t, res.VsFranz.CPUPerEvent)
		}
	}

	var table bytes.Buffer
	require.NoError(t, rep.WriteTable(&table))
	lines := strings.Split(table.String(), "\n")
	rows := 0
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), BrokerEmbedded+" ") {
			rows++
			require.NotContains(t, l, "FAILED")
		}
	}
	require.Equal(t, len(units), rows, table.String())
	require.Contains(t, table.String(), "events/s")
	require.Contains(t, table.String(), "CPU vs base")
	require.Contains(t, table.String(), "CPU vs franz")

	var js bytes.Buffer
	require.NoError(t, rep.WriteJSON(&js))
	var back Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.Equal(t, SchemaVersion, back.Schema)
	require.Len(t, back.Results, len(units))
	require.Equal(t, rep.Results[1].Summary, back.Results[1].Summary)
	require.Positive(t, back.EventBytes[LevelRequestResponse])
}

// childEnv makes the test binary act as auditbench when the Subprocess
// runner starts it, so the subprocess path is tested without a go build.
const childEnv = "AUDITBENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestMainWritesReport runs the command in process for one stage, with a
// warm-up and two rounds: JSON on stdout, the same report in --out.
func TestMainWritesReport(t *testing.T) {
	o := tinyOptions(t)
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), []string{"--in-process", "--stages", "producer", "--events", "40", "--batch", "20",
		"--rounds", "2", "--warmup", "1", "--sync-writes=false", "--kafka", "", "--fixtures", o.Fixtures, "--json", "--out", dir}, &stdout, &stderr)
	require.NoError(t, err, stderr.String())

	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.Len(t, rep.Results, 2)
	for _, res := range rep.Results {
		require.Empty(t, res.Error)
		require.Len(t, res.Rounds, 2, "the warm-up round is not reported")
		require.Equal(t, 40, res.Rounds[0].Events)
		require.Contains(t, res.RSSScope, "whole harness process")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	data, err := os.ReadFile(files[0])
	require.NoError(t, err)
	var saved Report
	require.NoError(t, json.Unmarshal(data, &saved))
	require.Equal(t, rep.Results[1].Summary, saved.Results[1].Summary)
	require.Equal(t, SchemaVersion, saved.Schema)
}

// TestSubprocessRunner runs units in child processes, as `make bench`
// does, and checks that each reports its own peak RSS.
func TestSubprocessRunner(t *testing.T) {
	o := tinyOptions(t)
	o.Stages, o.Events, o.Warmup, o.Rounds = []string{StageProducer}, 40, 0, 1
	exe, err := os.Executable()
	require.NoError(t, err)
	t.Setenv(childEnv, "1")
	args := []string{"--events", "40", "--batch", "20", "--rounds", "1", "--warmup", "0", "--sync-writes=false", "--kafka", "", "--fixtures", o.Fixtures}
	rep, err := Run(context.Background(), o, Subprocess(exe, args, nil), discard())
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	for _, res := range rep.Results {
		require.Empty(t, res.Error)
		require.Equal(t, 40, res.Rounds[0].Events)
		require.Positive(t, res.PeakRSSBytes)
		require.Contains(t, res.RSSScope, "unit subprocess")
	}
	require.NotNil(t, rep.Results[1].VsBaseline)

	// A unit that fails in its subprocess is reported, with its error.
	bad := append(slices.Clone(args), "--round-timeout", "1ns")
	rep, err = Run(context.Background(), o, Subprocess(exe, bad, nil), discard())
	require.ErrorContains(t, err, "units failed")
	require.NotEmpty(t, rep.Results[0].Error)
}

func TestGeneratorMixAndSizes(t *testing.T) {
	dir, err := FindFixtures(".")
	require.NoError(t, err)
	g, err := NewGenerator(dir, DefaultMix(), "0badcafe")
	require.NoError(t, err)

	sizes := g.tpl.Sizes()
	require.InDelta(t, 1400, sizes[LevelMetadata], 300, "Metadata events are about 1.4 KB")
	require.InDelta(t, 9<<10, sizes[LevelRequest], 2<<10, "Request events are about 9 KB")
	require.InDelta(t, 22<<10, sizes[LevelRequestResponse], 4<<10, "RequestResponse events are about 22 KB")

	evs := g.Next(300)
	levels := map[string]int{}
	ids := map[string]bool{}
	for _, ev := range evs {
		var decoded struct {
			Level          string          `json:"level"`
			AuditID        string          `json:"auditID"`
			ResponseObject json.RawMessage `json:"responseObject"`
		}
		require.NoError(t, json.Unmarshal(ev.JSON, &decoded))
		require.Equal(t, ev.Level, decoded.Level)
		require.Equal(t, ev.AuditID, decoded.AuditID)
		require.False(t, ids[ev.AuditID], "auditID %s repeated", ev.AuditID)
		ids[ev.AuditID] = true
		levels[ev.Level]++
		if ev.Level == LevelRequestResponse {
			require.Contains(t, string(decoded.ResponseObject), "managedFields")
			require.Contains(t, string(decoded.ResponseObject), "kubectl.kubernetes.io/last-applied-configuration")
		}
	}
	require.Equal(t, map[string]int{LevelMetadata: 210, LevelRequest: 60, LevelRequestResponse: 30}, levels)

	_, err = ParseMix("metadata=50,request=20")
	require.ErrorContains(t, err, "add up to 100")
	_, err = ParseMix("metadata=50,bodies=50")
	require.ErrorContains(t, err, `unknown level "bodies"`)
	m, err := ParseMix("metadata=100,request=0,requestresponse=0")
	require.NoError(t, err)
	require.Equal(t, Mix{Metadata: 100}, m)
}

func TestStatsAndPercentiles(t *testing.T) {
	require.Equal(t, Stat{Min: 1, Median: 3}, stat([]float64{5, 1, 3}))
	require.Equal(t, Stat{Min: 1, Median: 2.5}, stat([]float64{4, 1, 3, 2}))
	require.Equal(t, Stat{}, stat(nil))
	var samples []time.Duration
	for i := 1; i <= 100; i++ {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50.0, percentileMs(samples, 0.50))
	require.Equal(t, 99.0, percentileMs(samples, 0.99))
	require.Equal(t, 0.0, percentileMs(nil, 0.99))

	s := summarize([]Round{{Events: 1000, Bytes: 2e6, Seconds: 2, CPUSeconds: 1}, {Events: 1000, Bytes: 2e6, Seconds: 1, CPUSeconds: 0.5}})
	require.Equal(t, Stat{Min: 500, Median: 750}, s.EventsPerSec)
	require.Equal(t, Stat{Min: 50, Median: 75}, s.CPUSecPer100k)
}

func TestChildArgsDropParentOnlyFlags(t *testing.T) {
	require.Equal(t, []string{"--events", "10", "-rounds=2"},
		childArgs([]string{"--json", "--events", "10", "--out", "x", "-rounds=2", "--out=y", "--in-process"}))
}

func TestOptionsValidate(t *testing.T) {
	o := DefaultOptions()
	o.Stages = []string{"producer", "cls"}
	require.ErrorContains(t, o.Validate(), `unknown stage "cls"`)
	o = DefaultOptions()
	o.Events = 0
	require.ErrorContains(t, o.Validate(), "events")
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
