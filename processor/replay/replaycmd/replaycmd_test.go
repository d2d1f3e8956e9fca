package replaycmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/processor/replay/replaycmd"
	"github.com/auditpipe/auditpipe/schemas"
)

// run runs the command line args ("replay" and its flags) as the
// processor binary does.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		return fmt.Errorf("test: not a replay command line: %q", args)
	}
	return replaycmd.Command{Name: "processor replay"}.Run(ctx, args[1:], stdout, stderr)
}

// rawTopic creates a raw topic on a fresh broker and writes the public
// fixtures to it as the webhook producer does (two clusters), in phases
// separated in time; it returns the brokers, the topic and the times
// between phases.
func rawTopic(tb testing.TB, phases int) ([]string, string, []time.Time) {
	tb.Helper()
	brokers := kafkatest.Brokers(tb)
	topic := strings.NewReplacer("/", ".").Replace(tb.Name()) + ".raw"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(tb, err)
	defer admin.Close()
	require.NoError(tb, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}))
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(tb, err)
	defer prod.Close()

	fixtures := audittest.Load(tb, audittest.Dir(tb))
	recs := make([]kafka.Record, 0, len(fixtures))
	for i, f := range fixtures {
		var key []byte
		if f.Event != nil {
			key = []byte(f.Event.AuditID)
		}
		recs = append(recs, kafka.Record{Topic: topic, Key: key, Value: f.Raw, Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte([]string{"c1", "c2"}[i%2])},
			{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
			{Key: schemas.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
			{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
		}})
	}
	per := (len(recs) + phases - 1) / phases
	var times []time.Time
	for i := 0; i < phases; i++ {
		if i > 0 {
			time.Sleep(15 * time.Millisecond)
			times = append(times, time.Now())
			time.Sleep(15 * time.Millisecond)
		}
		require.NoError(tb, prod.Produce(ctx, recs[min(i*per, len(recs)):min((i+1)*per, len(recs))]...))
	}
	return brokers, topic, times
}

// openStore opens a store a replay wrote, with the engine it wrote it
// with.
func openStore(tb testing.TB, engine, path string) eventstore.Store {
	tb.Helper()
	switch engine {
	case eventstore.EngineSQLite:
		s, err := local.Open(path, local.Options{})
		require.NoError(tb, err)
		return s
	case eventstore.EngineVictoriaLogs:
		s, err := vlstore.Open(path, eventstore.Options{}, vlstore.Config{})
		require.NoError(tb, err)
		return s
	}
	tb.Fatalf("test: engine %q", engine)
	return nil
}

// storedEvents returns every event in a store, read through the
// engine-neutral Query.
func storedEvents(tb testing.TB, engine, path string) []schemas.ProcessedEvent {
	tb.Helper()
	s := openStore(tb, engine, path)
	defer s.Close()
	res, err := s.Query(context.Background(), eventstore.Query{Limit: eventstore.MaxLimit})
	require.NoError(tb, err)
	require.Len(tb, res.Events, res.Total)
	out := make([]schemas.ProcessedEvent, len(res.Events))
	for i, raw := range res.Events {
		require.NoError(tb, json.Unmarshal(raw, &out[i]))
	}
	return out
}

// storedIDs returns the (cluster, auditID, stage) identities in a store.
func storedIDs(tb testing.TB, engine, path string) map[string]bool {
	tb.Helper()
	ids := map[string]bool{}
	for _, pe := range storedEvents(tb, engine, path) {
		ids[pe.Pipeline.Cluster+"/"+pe.AuditID+"/"+pe.Stage] = true
	}
	return ids
}

// totalEventsOut reads "events out" from the last "total" row of a
// summary table.
func totalEventsOut(tb testing.TB, summary string) int {
	tb.Helper()
	var row []string
	for _, line := range strings.Split(summary, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "total" {
			row = f
		}
	}
	require.Len(tb, row, 9, "total row of:\n%s", summary)
	n, err := strconv.Atoi(row[4]) // total, events, bytes, unit, events out, ...
	require.NoError(tb, err)
	return n
}

func TestReplayCommandDryRunAndLocalStore(t *testing.T) {
	brokers, topic, _ := rawTopic(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	base := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--cluster", "c2", "--progress", "50ms"}

	var dry, errOut bytes.Buffer
	require.NoError(t, run(ctx, append(base, "--dry-run"), &dry, &errOut))
	require.Contains(t, dry.String(), "Dry run of "+topic+" with policy tke-default.yaml@sha256:")
	require.Contains(t, errOut.String(), "replay: ", "progress lines on stderr")
	t.Log(dry.String())
	predicted := totalEventsOut(t, dry.String())
	require.Positive(t, predicted)
	require.Regexp(t, `(?m)^\s*detection rule\s+matches`, dry.String(), "the dry run counts matches per detection rule")

	store := filepath.Join(dir, "events.db")
	var out bytes.Buffer
	args := append(base, "--target", "local", "--store-engine", "sqlite", "--store", store, "--checkpoint", filepath.Join(dir, "cp.json"))
	require.NoError(t, run(ctx, args, &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "complete")
	require.Equal(t, predicted, totalEventsOut(t, out.String()), "the replay kept what the dry run predicted")
	ids := storedIDs(t, eventstore.EngineSQLite, store)
	require.NotEmpty(t, ids)
	require.LessOrEqual(t, len(ids), predicted, "the store keeps each (cluster, auditID, stage) once")
	for id := range ids {
		require.True(t, strings.HasPrefix(id, "c2/"), id)
	}
	// The replay ran the detection rules: the dry run's table lists the
	// rules that matched and the stored events carry them.
	detected := 0
	for _, pe := range storedEvents(t, eventstore.EngineSQLite, store) {
		if len(pe.Pipeline.Detections) > 0 {
			detected++
		}
		for _, id := range pe.Pipeline.Detections {
			require.Regexp(t, `(?m)^\s*`+id+`\s+[1-9][0-9]*\s*$`, dry.String())
		}
	}
	require.Positive(t, detected, "replayed events carry auditpipe.detections")

	// Errors name the flag.
	require.ErrorContains(t, run(ctx, append(base, "--from", "yesterday", "--dry-run"), &out, &bytes.Buffer{}), "--from")
	require.ErrorContains(t, run(ctx, append(base, "--offsets", "0:5", "--dry-run"), &out, &bytes.Buffer{}), "PARTITION:START-END")
	require.ErrorContains(t, run(ctx, append(base, "--target", "kafka", "--target-topic", "x"), &out, &bytes.Buffer{}), "checkpoint: required")
	require.ErrorContains(t, run(ctx, append(base, "--target", "kafka", "--checkpoint", filepath.Join(dir, "x.json")), &out, &bytes.Buffer{}), "--target-topic")
}

// TestReplayCommandSurvivesKill runs the replay binary into a local store
// of each engine, kills it (SIGKILL) while it is half-way, runs it again,
// and compares the store with an uninterrupted replay: nothing missing,
// nothing twice. The rerun repeats the batch in flight at the kill, which
// the store must already hold durably and take again as duplicates.
func TestReplayCommandSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	brokers, topic, _ := rawTopic(t, 1)
	bin := filepath.Join(t.TempDir(), "processor")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/processor")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	for _, engine := range []string{eventstore.EngineVictoriaLogs, eventstore.EngineSQLite} {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			store, cp := filepath.Join(dir, "killed"), filepath.Join(dir, "cp.json")
			args := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--store-engine", engine,
				"--target", "local", "--store", store, "--checkpoint", cp, "--parallelism", "1", "--batch-size", "3"}
			cmd := exec.Command(bin, args...)
			require.NoError(t, cmd.Start())
			// Kill once the checkpoint shows progress on a partition.
			deadline := time.Now().Add(30 * time.Second)
			for {
				data, err := os.ReadFile(cp)
				if err == nil && bytes.Contains(data, []byte(`"next": `)) && progressed(data) {
					break
				}
				require.True(t, time.Now().Before(deadline), "no progress in the checkpoint")
				time.Sleep(2 * time.Millisecond)
			}
			require.NoError(t, cmd.Process.Kill())
			_ = cmd.Wait()
			data, err := os.ReadFile(cp)
			require.NoError(t, err)
			require.False(t, complete(data), "killed before the end:\n%s", data)

			var out bytes.Buffer
			require.NoError(t, run(context.Background(), args, &out, &bytes.Buffer{}))
			require.Contains(t, out.String(), "complete")

			ref := filepath.Join(dir, "ref")
			refArgs := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--store-engine", engine,
				"--target", "local", "--store", ref, "--checkpoint", filepath.Join(dir, "ref.json")}
			require.NoError(t, run(context.Background(), refArgs, &bytes.Buffer{}, &bytes.Buffer{}))
			require.Equal(t, storedIDs(t, engine, ref), storedIDs(t, engine, store))
			require.Len(t, storedEvents(t, engine, store), len(storedEvents(t, engine, ref)), "nothing stored twice")
		})
	}
}

// TestReplayCommandVlogsStore replays into a store of the default engine
// (vlogs, a directory, as data/store/vlogs), reads the events back through
// the engine-neutral interface and compares them with a replay of the same
// history into SQLite; a second replay of it into the vlogs store (a new
// checkpoint: every batch repeated) changes nothing.
func TestReplayCommandVlogsStore(t *testing.T) {
	brokers, topic, _ := rawTopic(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	base := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--target", "local"}

	vlogs := filepath.Join(dir, "store", "vlogs")
	var out bytes.Buffer
	require.NoError(t, run(ctx, append(base, "--store", vlogs, "--checkpoint", filepath.Join(dir, "cp1.json")), &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "complete")
	st, err := os.Stat(vlogs)
	require.NoError(t, err)
	require.True(t, st.IsDir(), "the default engine is vlogs, whose store is a directory")

	events := storedEvents(t, eventstore.EngineVictoriaLogs, vlogs)
	require.NotEmpty(t, events)
	require.LessOrEqual(t, len(events), totalEventsOut(t, out.String()), "the store keeps each event once")
	ids := storedIDs(t, eventstore.EngineVictoriaLogs, vlogs)
	for id := range ids {
		require.True(t, strings.HasPrefix(id, "c1/") || strings.HasPrefix(id, "c2/"), id)
	}

	sqlite := filepath.Join(dir, "store", "events.db")
	require.NoError(t, run(ctx, append(base, "--store-engine", "sqlite", "--store", sqlite, "--checkpoint", filepath.Join(dir, "sqlite.json")),
		&bytes.Buffer{}, &bytes.Buffer{}))
	require.Equal(t, storedIDs(t, eventstore.EngineSQLite, sqlite), ids, "both engines hold the same events")
	require.Len(t, storedEvents(t, eventstore.EngineSQLite, sqlite), len(events))

	out.Reset()
	require.NoError(t, run(ctx, append(base, "--store", vlogs, "--checkpoint", filepath.Join(dir, "cp2.json")), &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "complete")
	again := storedEvents(t, eventstore.EngineVictoriaLogs, vlogs)
	require.Len(t, again, len(events), "a repeated replay stores nothing twice")
	require.Equal(t, ids, storedIDs(t, eventstore.EngineVictoriaLogs, vlogs))
}

// TestReplayCommandStoreEngineErrors: a wrong --store-engine, or a vlogs
// store over a file (a SQLite store, most likely), is refused with an
// error that says what to give instead, and creates nothing.
func TestReplayCommandStoreEngineErrors(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	dir := t.TempDir()
	sqliteFile := filepath.Join(dir, "events.db")
	s, err := local.Open(sqliteFile, local.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	otherFile := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(otherFile, []byte("not a store\n"), 0o600))

	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"unknown engine", []string{"--store-engine", "victorialogs", "--store", filepath.Join(dir, "new")},
			[]string{`--store-engine "victorialogs"`, "want vlogs or sqlite"}},
		{"empty engine", []string{"--store-engine", "", "--store", filepath.Join(dir, "new")},
			[]string{`--store-engine ""`, "want vlogs or sqlite"}},
		{"vlogs over a SQLite store", []string{"--store", sqliteFile},
			[]string{"--store " + sqliteFile + " is a file", "--store-engine sqlite"}},
		{"vlogs over another file", []string{"--store-engine", "vlogs", "--store", otherFile},
			[]string{"--store " + otherFile + " is a file", "--store-engine sqlite"}},
		{"no store", []string{"--store-engine", "sqlite"},
			[]string{"--target local needs --store"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"replay", "--brokers", strings.Join(brokers, ","), "--target", "local",
				"--checkpoint", filepath.Join(dir, "cp.json")}, tc.args...)
			err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			for _, want := range tc.wants {
				require.ErrorContains(t, err, want)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"events.db", "notes.txt"}, names, "a refused replay creates nothing")
}

type cpFile struct {
	Partitions map[string]struct {
		Start, End, Next int64
	} `json:"partitions"`
}

func progressed(data []byte) bool {
	var c cpFile
	if json.Unmarshal(data, &c) != nil {
		return false
	}
	for _, p := range c.Partitions {
		if p.Next > p.Start {
			return true
		}
	}
	return false
}

func complete(data []byte) bool {
	var c cpFile
	if json.Unmarshal(data, &c) != nil {
		return false
	}
	for _, p := range c.Partitions {
		if p.Next < p.End {
			return false
		}
	}
	return true
}
