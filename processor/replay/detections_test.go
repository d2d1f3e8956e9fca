package replay_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/replay"
	"github.com/auditpipe/auditpipe/schemas"
)

// keepAll keeps every event as the apiserver sent it, so that every
// replayed event is in the target.
const keepAll = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n"

// TestReplayEvaluatesDetectionRules replays the Falco fixtures: the dry
// run's matches per rule are those of the shipped rules evaluated
// directly on each fixture event, including events the policy drops; the
// real replay's events carry the same auditpipe.detections; alerts go to
// the alerts target only when one is given.
func TestReplayEvaluatesDetectionRules(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kafkago.NewAdmin(brokers, "replay-test")
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "replay-test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	e := &env{brokers: brokers, prod: prod, admin: admin, reader: newReader(t, brokers, 5), raw: "detections.raw"}
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: e.raw, Partitions: rawPartitions, ReplicationFactor: 1}))
	falco := filepath.Join(audittest.Dir(t), "falco")
	recs := rawRecords(t, e.raw, falco)
	require.NoError(t, prod.Produce(ctx, recs...))

	rules, err := detect.LoadDefault("")
	require.NoError(t, err)
	fleet := &detect.Fleet{Default: rules}

	// Expected, independently of the replay and the pipeline: each
	// fixture event decoded and given to the rules, with the cluster the
	// record carries.
	want := map[string]int64{}
	wantPerEvent := map[string]int{} // "cluster auditID stage detections" -> count
	for _, r := range recs {
		var ev schemas.Event
		if json.Unmarshal(r.Value, &ev) != nil || ev.AuditID == "" {
			continue
		}
		cluster := string(r.HeaderValue(schemas.HeaderCluster))
		matches, errs := rules.Evaluate(&ev, &schemas.Pipeline{Cluster: cluster, Source: schemas.SourceWebhook})
		require.Empty(t, errs)
		var ids []string
		for _, m := range matches {
			want[m.ID]++
			ids = append(ids, m.ID)
		}
		wantPerEvent[cluster+" "+ev.AuditID+" "+ev.Stage+" "+strings.Join(ids, ",")]++
	}
	require.GreaterOrEqual(t, len(want), 8, "the Falco fixtures exercise most shipped rules: %v", want)

	// The dry run under the TKE default policy, which drops some events
	// (their alerts are still raised, so still counted).
	tke := loadPolicy(t, policies.TKEDefaultName, policies.TKEDefault)
	dry, err := runReplay(t, ctx, replay.Config{Topic: e.raw, PolicyID: "tke", RulesID: "default", DryRun: true},
		replay.Deps{Reader: e.reader, Policy: tke, Detections: fleet})
	require.NoError(t, err)
	require.Equal(t, want, dry.Detections)
	require.Less(t, dry.Total.EventsOut, dry.Total.EventsIn, "the policy drops some events")
	var table strings.Builder
	require.NoError(t, dry.WriteTable(&table))
	for id, n := range want {
		require.Regexp(t, `(?m)^\s*`+id+`\s+`+strconv.FormatInt(n, 10)+`\s*$`, table.String())
	}

	// Without rules nothing is counted: the counts come from the rules.
	none, err := runReplay(t, ctx, replay.Config{Topic: e.raw, PolicyID: "tke", DryRun: true}, replay.Deps{Reader: e.reader, Policy: tke})
	require.NoError(t, err)
	require.Empty(t, none.Detections)

	// The real replay keeps every event: each carries its detections.
	target, alertsTopic := e.topic(t, "events"), e.topic(t, "alerts")
	all := loadPolicy(t, "keep-all", []byte(keepAll))
	real, err := runReplay(t, ctx, replay.Config{Topic: e.raw, PolicyID: "all", RulesID: "default", Checkpoint: filepath.Join(t.TempDir(), "cp.json")},
		replay.Deps{Reader: e.reader, Policy: all, Detections: fleet,
			Target: replay.KafkaTarget{Producer: prod, Topic: target}, Alerts: replay.KafkaTarget{Producer: prod, Topic: alertsTopic}})
	require.NoError(t, err)
	require.Equal(t, want, real.Detections)
	got := map[string]int{}
	for _, r := range e.readTopic(t, target) {
		pe := processed(t, r.Value)
		got[pe.Pipeline.Cluster+" "+pe.AuditID+" "+pe.Stage+" "+strings.Join(pe.Pipeline.Detections, ",")]++
	}
	require.Equal(t, wantPerEvent, got)

	alerts := map[string]int64{}
	for _, r := range e.readTopic(t, alertsTopic) {
		var a schemas.Alert
		require.NoError(t, json.Unmarshal(r.Value, &a))
		require.True(t, slices.Contains([]string{"c1", "c2"}, a.Cluster))
		alerts[a.Rule]++
	}
	require.Equal(t, want, alerts)
}
