package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/processor/replay"
	"github.com/auditpipe/auditpipe/schemas"
)

const rawPartitions = 3

type env struct {
	brokers []string
	prod    kafka.Producer
	reader  *kafkago.Reader
	admin   kafka.Admin
	raw     string
	// phases are the raw offset ranges per partition of each produce call.
	phases []map[int32]kafka.OffsetRange
	// times separate the phases: times[i] is after phase i and before
	// phase i+1.
	times []time.Time
}

// setup starts a broker and writes the public fixtures to the raw topic
// the way the producer does, in phases separated in time.
func setup(tb testing.TB, phases int) *env {
	tb.Helper()
	brokers := kafkatest.Brokers(tb)
	name := strings.NewReplacer("/", ".", " ", "_").Replace(tb.Name())
	e := &env{brokers: brokers, raw: name + ".raw"}
	admin, err := kafkago.NewAdmin(brokers, "replay-test")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = admin.Close() })
	e.admin = admin
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "replay-test"})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = prod.Close() })
	e.prod = prod
	e.reader = newReader(tb, brokers, 7)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(tb, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: e.raw, Partitions: rawPartitions, ReplicationFactor: 1}))

	recs := rawRecords(tb, e.raw, audittest.Dir(tb))
	per := (len(recs) + phases - 1) / phases
	prev := map[int32]int64{}
	for i := 0; i < phases; i++ {
		if i > 0 {
			// Kafka timestamps are milliseconds: leave room on both sides.
			time.Sleep(15 * time.Millisecond)
			e.times = append(e.times, time.Now())
			time.Sleep(15 * time.Millisecond)
		}
		part := recs[min(i*per, len(recs)):min((i+1)*per, len(recs))]
		require.NoError(tb, prod.Produce(ctx, part...))
		bounds, err := e.reader.Bounds(ctx, e.raw)
		require.NoError(tb, err)
		ph := map[int32]kafka.OffsetRange{}
		for p, b := range bounds {
			ph[p] = kafka.OffsetRange{Start: prev[p], End: b.End}
			prev[p] = b.End
		}
		e.phases = append(e.phases, ph)
	}
	return e
}

func newReader(tb testing.TB, brokers []string, maxBatch int) *kafkago.Reader {
	tb.Helper()
	r, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers, ClientID: "replay-test", MaxBatch: maxBatch})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// rawRecords turns every fixture value (events and the deliberately broken
// ones) into a raw record as the webhook producer writes it, alternating
// two clusters.
func rawRecords(tb testing.TB, topic, root string) []kafka.Record {
	tb.Helper()
	fixtures := audittest.Load(tb, root)
	require.NotEmpty(tb, fixtures)
	received := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	out := make([]kafka.Record, 0, len(fixtures))
	for i, f := range fixtures {
		cluster := []string{"c1", "c2"}[i%2]
		var key []byte
		if f.Event != nil {
			key = []byte(f.Event.AuditID)
		}
		out = append(out, kafka.Record{
			Topic: topic,
			Key:   key,
			Value: f.Raw,
			Headers: []kafka.Header{
				{Key: schemas.HeaderCluster, Value: []byte(cluster)},
				{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
				{Key: schemas.HeaderReceivedAt, Value: []byte(received.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano))},
				{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
			},
		})
	}
	return out
}

func (e *env) topic(tb testing.TB, name string) string {
	tb.Helper()
	name = strings.NewReplacer("/", ".", " ", "_").Replace(tb.Name()) + "." + name
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(tb, e.admin.EnsureTopics(ctx, kafka.TopicSpec{Name: name, Partitions: 2, ReplicationFactor: 1}))
	return name
}

// readTopic returns every record of topic.
func (e *env) readTopic(tb testing.TB, topic string) []kafka.Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bounds, err := e.reader.Bounds(ctx, topic)
	require.NoError(tb, err)
	var out []kafka.Record
	for p, b := range bounds {
		require.NoError(tb, e.reader.ReadRange(ctx, topic, p, b, func(_ context.Context, bt kafka.Batch) error {
			out = append(out, bt.Records...)
			return nil
		}))
	}
	return out
}

func loadPolicy(tb testing.TB, name string, data []byte) *policy.Policy {
	tb.Helper()
	p, err := policy.Load(name, data)
	require.NoError(tb, err)
	return p
}

func runReplay(tb testing.TB, ctx context.Context, cfg replay.Config, deps replay.Deps) (replay.Summary, error) {
	tb.Helper()
	r, err := replay.New(cfg, deps)
	require.NoError(tb, err)
	return r.Run(ctx)
}

// processed decodes a processed event.
func processed(tb testing.TB, v []byte) schemas.ProcessedEvent {
	tb.Helper()
	var pe schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(v, &pe))
	return pe
}

// withoutProcessedAt is the value with auditpipe.processedAt removed: the
// one field in which the live processor (wall clock) and a replay (the
// raw record's time) differ by design.
func withoutProcessedAt(tb testing.TB, v []byte) string {
	tb.Helper()
	var m map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(v, &m))
	var p map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(m[schemas.PipelineKey], &p))
	require.Contains(tb, p, "processedAt")
	delete(p, "processedAt")
	pb, err := json.Marshal(p)
	require.NoError(tb, err)
	m[schemas.PipelineKey] = pb
	out, err := json.Marshal(m)
	require.NoError(tb, err)
	return string(out)
}

func headerString(r kafka.Record) string {
	var b strings.Builder
	for _, h := range r.Headers {
		fmt.Fprintf(&b, "%s=%s;", h.Key, h.Value)
	}
	return b.String()
}

// TestReplayWindowMatchesLivePipeline runs the live pipeline over the
// whole raw topic, then replays the middle time window with the same
// policy, and compares the replay's output with what the live pipeline
// produced for the records of that window: same events (but for
// processedAt), same keys and headers, same DLQ records.
func TestReplayWindowMatchesLivePipeline(t *testing.T) {
	e := setup(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pol := loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)

	// The live processor: the same records, through pipeline.Handle, to
	// real events and DLQ topics.
	events, dlq := e.topic(t, "events"), e.topic(t, "dlq")
	live, err := pipeline.New(pipeline.Config{Topics: schemas.Topics{Raw: e.raw, Events: events, DLQ: dlq}}, pol, e.prod, nil, nil)
	require.NoError(t, err)
	bounds, err := e.reader.Bounds(ctx, e.raw)
	require.NoError(t, err)
	for p, b := range bounds {
		require.NoError(t, e.reader.ReadRange(ctx, e.raw, p, b, live.Handle))
	}

	window := e.phases[1]
	inWindow := func(topic string, p int32, off int64) bool {
		return topic == e.raw && off >= window[p].Start && off < window[p].End
	}
	var want, wantDLQ []string
	for _, r := range e.readTopic(t, events) {
		o := processed(t, r.Value).Pipeline.Origin
		if inWindow(o.Topic, o.Partition, o.Offset) {
			want = append(want, string(r.Key)+"|"+headerString(r)+"|"+withoutProcessedAt(t, r.Value))
		}
	}
	for _, r := range e.readTopic(t, dlq) {
		o := string(r.HeaderValue(schemas.HeaderDLQOrigin))
		parts := strings.Split(o, "/")
		p, _ := strconv.Atoi(parts[len(parts)-2])
		off, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		if inWindow(strings.Join(parts[:len(parts)-2], "/"), int32(p), off) {
			wantDLQ = append(wantDLQ, string(r.Key)+"|"+headerString(r)+"|"+string(r.Value))
		}
	}
	require.NotEmpty(t, want, "the window holds events the live policy keeps")

	replayed, replayedDLQ := e.topic(t, "replayed"), e.topic(t, "replayed-dlq")
	sum, err := runReplay(t, ctx, replay.Config{
		Topic: e.raw, From: e.times[0], To: e.times[1], PolicyID: "tke-default",
		Checkpoint: filepath.Join(t.TempDir(), "cp.json"),
	}, replay.Deps{
		Reader: e.reader, Policy: pol,
		Target: replay.KafkaTarget{Producer: e.prod, Topic: replayed},
		DLQ:    replay.KafkaTarget{Producer: e.prod, Topic: replayedDLQ},
	})
	require.NoError(t, err)
	require.True(t, sum.Complete)
	require.Equal(t, window, sum.Ranges, "the time window resolves to exactly the middle phase's offsets")

	var got, gotDLQ []string
	rawTimes := map[string]time.Time{}
	for _, r := range e.readTopic(t, e.raw) {
		rawTimes[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = r.Time
	}
	for _, r := range e.readTopic(t, replayed) {
		pe := processed(t, r.Value)
		// Deterministic output: processedAt is the raw record's time.
		require.True(t, pe.Pipeline.ProcessedAt.Equal(rawTimes[fmt.Sprintf("%d/%d", pe.Pipeline.Origin.Partition, pe.Pipeline.Origin.Offset)]))
		got = append(got, string(r.Key)+"|"+headerString(r)+"|"+withoutProcessedAt(t, r.Value))
	}
	for _, r := range e.readTopic(t, replayedDLQ) {
		gotDLQ = append(gotDLQ, string(r.Key)+"|"+headerString(r)+"|"+string(r.Value))
	}
	sort.Strings(want)
	sort.Strings(got)
	sort.Strings(wantDLQ)
	sort.Strings(gotDLQ)
	require.Equal(t, want, got)
	require.Equal(t, wantDLQ, gotDLQ)
	require.Equal(t, int64(len(got)), sum.Total.EventsOut)
	require.Equal(t, int64(len(gotDLQ)), sum.Total.DLQ)
	var windowLen int64
	for _, r := range window {
		windowLen += r.Len()
	}
	require.Equal(t, windowLen, sum.Read)
}

// TestDryRunPredictsReplay prices another policy with a dry run, then
// replays with it: the target receives exactly the events and bytes the
// dry run predicted, per cluster, and the replay's own counts (per rule
// too) are the dry run's.
func TestDryRunPredictsReplay(t *testing.T) {
	e := setup(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lean := loadPolicy(t, policies.LeanName, policies.Lean)
	cfg := replay.Config{Topic: e.raw, Clusters: []string{"c1"}, PolicyID: "lean", DryRun: true}

	dry, err := runReplay(t, ctx, cfg, replay.Deps{Reader: e.reader, Policy: lean})
	require.NoError(t, err)
	require.True(t, dry.Complete)
	require.Positive(t, dry.SkippedCluster, "c2 is not replayed")
	require.Equal(t, []string{"c1"}, keys(dry.ByCluster))
	require.Positive(t, dry.Total.EventsOut)
	require.Less(t, dry.Total.EventsOut, dry.Total.EventsIn, "lean drops some events")
	require.Greater(t, len(dry.ByRule), 2, "several rules decide")
	var ruleSum replay.Counts
	for _, c := range dry.ByRule {
		ruleSum.EventsIn += c.EventsIn
		ruleSum.BytesIn += c.BytesIn
		ruleSum.EventsOut += c.EventsOut
		ruleSum.BytesOut += c.BytesOut
		ruleSum.DLQ += c.DLQ
	}
	require.Equal(t, dry.Total, ruleSum)
	var table bytes.Buffer
	require.NoError(t, dry.WriteTable(&table))
	require.Contains(t, table.String(), "rules[8] Request")
	require.Contains(t, table.String(), replay.RuleDLQ)

	// The same history under the TKE default keeps more: the dry run
	// really evaluates the policy it is given.
	tke, err := runReplay(t, ctx, replay.Config{Topic: e.raw, Clusters: []string{"c1"}, PolicyID: "tke", DryRun: true},
		replay.Deps{Reader: e.reader, Policy: loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)})
	require.NoError(t, err)
	require.Equal(t, dry.Total.EventsIn, tke.Total.EventsIn)
	require.Greater(t, tke.Total.BytesOut, dry.Total.BytesOut)

	target := e.topic(t, "lean")
	cfg.DryRun = false
	cfg.Checkpoint = filepath.Join(t.TempDir(), "cp.json")
	real, err := runReplay(t, ctx, cfg, replay.Deps{Reader: e.reader, Policy: lean, Target: replay.KafkaTarget{Producer: e.prod, Topic: target}})
	require.NoError(t, err)
	require.Equal(t, dry.Stats, real.Stats)

	written := map[string]replay.Counts{}
	for _, r := range e.readTopic(t, target) {
		pe := processed(t, r.Value)
		c := written[pe.Pipeline.Cluster]
		c.EventsOut++
		c.BytesOut += int64(len(r.Value))
		written[pe.Pipeline.Cluster] = c
	}
	require.Equal(t, []string{"c1"}, keys(written))
	require.Equal(t, dry.ByCluster["c1"].EventsOut, written["c1"].EventsOut)
	require.Equal(t, dry.ByCluster["c1"].BytesOut, written["c1"].BytesOut)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestInterruptAndResume cancels a replay after a few acknowledged
// writes, resumes it from its checkpoint, and compares the target with an
// uninterrupted replay: the same records, byte for byte, none missing and
// none twice.
func TestInterruptAndResume(t *testing.T) {
	e := setup(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pol := loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)

	// Reference: one uninterrupted replay.
	clean := e.topic(t, "clean")
	ref, err := runReplay(t, ctx, replay.Config{Topic: e.raw, PolicyID: "tke", Checkpoint: filepath.Join(t.TempDir(), "ref.json")},
		replay.Deps{Reader: e.reader, Policy: pol, Target: replay.KafkaTarget{Producer: e.prod, Topic: clean}})
	require.NoError(t, err)

	target := e.topic(t, "resumed")
	cp := filepath.Join(t.TempDir(), "cp.json")
	cfg := replay.Config{Topic: e.raw, PolicyID: "tke", Checkpoint: cp, Parallelism: 2}
	kt := replay.KafkaTarget{Producer: e.prod, Topic: target}
	runCtx, interrupt := context.WithCancel(ctx)
	var writes atomic.Int32
	first, err := runReplay(t, runCtx, cfg, replay.Deps{Reader: e.reader, Policy: pol, Target: replay.TargetFunc(func(ctx context.Context, recs []kafka.Record) error {
		if err := kt.Write(ctx, recs); err != nil {
			return err
		}
		if writes.Add(1) == 3 {
			interrupt() // Ctrl-C while other batches may be in flight
		}
		return nil
	})})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, first.Complete)
	require.Positive(t, first.Total.EventsOut)
	require.Less(t, first.Total.EventsOut, ref.Total.EventsOut, "interrupted half-way")

	// A checkpoint belongs to one replay.
	_, err = runReplay(t, ctx, replay.Config{Topic: e.raw, PolicyID: "lean", Checkpoint: cp},
		replay.Deps{Reader: e.reader, Policy: pol, Target: kt})
	require.ErrorContains(t, err, "belongs to another replay")

	second, err := runReplay(t, ctx, cfg, replay.Deps{Reader: e.reader, Policy: pol, Target: kt})
	require.NoError(t, err)
	require.True(t, second.Resumed)
	require.True(t, second.Complete)
	require.Equal(t, ref.Stats, second.Stats, "counts over both runs are those of one run")

	values := func(topic string) []string {
		var out []string
		for _, r := range e.readTopic(t, topic) {
			out = append(out, string(r.Value))
		}
		sort.Strings(out)
		return out
	}
	got, want := values(target), values(clean)
	require.Len(t, got, int(ref.Total.EventsOut))
	require.Equal(t, want, got, "no gap, no duplicate, same bytes")

	// Running a complete replay again writes nothing.
	third, err := runReplay(t, ctx, cfg, replay.Deps{Reader: e.reader, Policy: pol, Target: replay.TargetFunc(func(context.Context, []kafka.Record) error {
		t.Error("a complete replay wrote again")
		return nil
	})})
	require.NoError(t, err)
	require.True(t, third.Complete)
}

// TestTargetFailureKeepsCheckpoint: a failing target stops the replay
// without moving the checkpoint past the failed batch; the resume writes
// it.
func TestTargetFailureKeepsCheckpoint(t *testing.T) {
	e := setup(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pol := loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)
	cfg := replay.Config{Topic: e.raw, PolicyID: "tke", Checkpoint: filepath.Join(t.TempDir(), "cp.json"), Parallelism: 1}
	seen := map[string]int{}
	var calls int
	store := replay.TargetFunc(func(_ context.Context, recs []kafka.Record) error {
		calls++
		if calls == 2 {
			return fmt.Errorf("store unavailable")
		}
		for _, r := range recs {
			o := processed(t, r.Value).Pipeline.Origin
			seen[fmt.Sprintf("%d/%d", o.Partition, o.Offset)]++
		}
		return nil
	})
	_, err := runReplay(t, ctx, cfg, replay.Deps{Reader: e.reader, Policy: pol, Target: store})
	require.ErrorContains(t, err, "store unavailable")
	sum, err := runReplay(t, ctx, cfg, replay.Deps{Reader: e.reader, Policy: pol, Target: store})
	require.NoError(t, err)
	require.True(t, sum.Complete)
	require.Len(t, seen, int(sum.Total.EventsOut))
	for k, n := range seen {
		require.Equal(t, 1, n, "origin %s written twice", k)
	}
}

func TestConfigValidate(t *testing.T) {
	now := time.Now()
	for name, cfg := range map[string]replay.Config{
		"no topic":        {DryRun: true},
		"no checkpoint":   {Topic: "raw"},
		"window reversed": {Topic: "raw", DryRun: true, From: now, To: now.Add(-time.Hour)},
		"both":            {Topic: "raw", DryRun: true, From: now, Offsets: map[int32]kafka.OffsetRange{0: {Start: 0, End: 1}}},
		"bad range":       {Topic: "raw", DryRun: true, Offsets: map[int32]kafka.OffsetRange{0: {Start: 5, End: 1}}},
	} {
		require.Error(t, cfg.Validate(), name)
	}
	require.NoError(t, replay.Config{Topic: "raw", DryRun: true}.Validate())
}

func TestOffsetRangeOutsideLogIsRefused(t *testing.T) {
	e := setup(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pol := loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)
	_, err := runReplay(t, ctx, replay.Config{Topic: e.raw, DryRun: true, Offsets: map[int32]kafka.OffsetRange{0: {Start: 0, End: 1 << 40}}},
		replay.Deps{Reader: e.reader, Policy: pol})
	require.ErrorContains(t, err, "beyond the high watermark")
	_, err = runReplay(t, ctx, replay.Config{Topic: e.raw, DryRun: true, Offsets: map[int32]kafka.OffsetRange{9: {Start: 0, End: 1}}},
		replay.Deps{Reader: e.reader, Policy: pol})
	require.ErrorContains(t, err, "partition 9 does not exist")

	// An explicit range replays exactly that range.
	sum, err := runReplay(t, ctx, replay.Config{Topic: e.raw, DryRun: true, Offsets: map[int32]kafka.OffsetRange{0: {Start: 2, End: 9}}},
		replay.Deps{Reader: e.reader, Policy: pol})
	require.NoError(t, err)
	require.Equal(t, int64(7), sum.Read)
}

// TestClusterPolicies: a per-cluster override applies to its cluster
// only; the others get the default policy.
func TestClusterPolicies(t *testing.T) {
	e := setup(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tke := loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)
	lean := loadPolicy(t, policies.LeanName, policies.Lean)
	dry := func(def *policy.Policy, overrides map[string]pipeline.Policy) replay.Summary {
		sum, err := runReplay(t, ctx, replay.Config{Topic: e.raw, DryRun: true}, replay.Deps{Reader: e.reader, Policy: def, ClusterPolicies: overrides})
		require.NoError(t, err)
		return sum
	}
	allTKE, allLean := dry(tke, nil), dry(lean, nil)
	require.NotEqual(t, allTKE.ByCluster["c2"], allLean.ByCluster["c2"])
	mixed := dry(tke, map[string]pipeline.Policy{"c2": lean})
	require.Equal(t, allTKE.ByCluster["c1"], mixed.ByCluster["c1"])
	require.Equal(t, allLean.ByCluster["c2"], mixed.ByCluster["c2"])
}
