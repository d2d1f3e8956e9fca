package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

const (
	metadataPolicy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n"
	requestPolicy  = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Request\n"
	brokenPolicy   = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n"
	dropAllPolicy  = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n"
)

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	// Write then rename, as config management tools do, so a reader never
	// sees half a file.
	tmp := path + ".tmp"
	require.NoError(tb, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(tb, os.Rename(tmp, path))
}

// fleetDir writes a registry whose default is the Request policy and
// whose cluster "quiet" overrides it with a policy that drops everything.
func fleetDir(tb testing.TB) (dir string, cfg app.Config) {
	tb.Helper()
	dir = tb.TempDir()
	writeFile(tb, filepath.Join(dir, "request.yaml"), requestPolicy)
	writeFile(tb, filepath.Join(dir, "none.yaml"), dropAllPolicy)
	writeFile(tb, filepath.Join(dir, "fleet.yaml"), `defaults:
  policy: request.yaml
clusters:
  prod-eu-1:
    displayName: Production EU 1
    region: eu-frankfurt
    environment: production
    owner: team-platform
  quiet:
    policy: none.yaml
`)
	cfg = config(tb)
	cfg.PolicyFile = ""
	cfg.FleetFile = filepath.Join(dir, "fleet.yaml")
	return dir, cfg
}

func rawRecord(tb testing.TB, cluster string, offset int64) kafka.Record {
	tb.Helper()
	ev, err := os.ReadFile("../../testdata/public-audit/falco/create_clusterrole.json")
	require.NoError(tb, err)
	return kafka.Record{Offset: offset, Value: ev, Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte(cluster)}}}
}

// TestFleetDefaultAndOverride: the registry's default policy applies to
// clusters without an override, the override to its cluster, and the
// registry's metadata enriches the events.
func TestFleetDefaultAndOverride(t *testing.T) {
	_, cfg := fleetDir(t)
	prod := &recorder{}
	a, err := app.New(cfg, app.Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return prod, nil }})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })
	b := kafka.Batch{Topic: schemas.DefaultRawTopic, Records: []kafka.Record{
		rawRecord(t, "prod-eu-1", 1), rawRecord(t, "quiet", 2), rawRecord(t, "unknown", 3),
	}}
	require.NoError(t, a.Handler().Handle(t.Context(), b))
	require.Len(t, prod.records, 2, "the quiet cluster's policy drops its event")
	var pe schemas.ProcessedEvent
	require.NoError(t, json.Unmarshal(prod.records[0].Value, &pe))
	require.Equal(t, "Request", pe.Level)
	require.Equal(t, &schemas.ClusterInfo{DisplayName: "Production EU 1", Region: "eu-frankfurt", Environment: "production", Owner: "team-platform"}, pe.Pipeline.ClusterInfo)
	var unknown schemas.ProcessedEvent
	require.NoError(t, json.Unmarshal(prod.records[1].Value, &unknown))
	require.Equal(t, "unknown", unknown.Pipeline.Cluster)
	require.Nil(t, unknown.Pipeline.ClusterInfo)
}

func TestFleetErrorsNameClusterAndFile(t *testing.T) {
	dir, cfg := fleetDir(t)
	writeFile(t, filepath.Join(dir, "none.yaml"), brokenPolicy)
	_, err := app.LoadFleet(cfg)
	require.ErrorContains(t, err, "clusters.quiet.policy")
	require.ErrorContains(t, err, "none.yaml")

	writeFile(t, filepath.Join(dir, "fleet.yaml"), "clusters:\n  a:\n    polcy: x.yaml\n")
	_, err = app.LoadFleet(cfg)
	require.ErrorContains(t, err, "polcy")

	writeFile(t, filepath.Join(dir, "fleet.yaml"), "clusters: {}\n")
	_, err = app.LoadFleet(cfg)
	require.ErrorContains(t, err, "no default policy")
}

// TestHotReloadUnderLoad runs the processor against the in-process broker
// while the policy file changes between two valid policies and a broken
// one. Every raw record must come out (none lost in flight), the broken
// policy must be refused with a log line while the previous one stays,
// and after the last change the new policy must be in force.
func TestHotReloadUnderLoad(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policy.yaml")
	writeFile(t, polFile, requestPolicy)

	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = brokers
	cfg.PolicyFile = polFile
	cfg.ReloadInterval = app.Duration(10 * time.Millisecond)
	cfg.Group = "reload-" + suffix
	cfg.Topics = schemas.Topics{Raw: "raw-" + suffix, Events: "events-" + suffix, DLQ: "dlq-" + suffix}
	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	for _, topic := range []string{cfg.Topics.Raw, cfg.Topics.Events, cfg.Topics.DLQ} {
		require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 3, ReplicationFactor: 1}))
	}

	var logs syncBuffer
	reg := prometheus.NewPedanticRegistry()
	a, err := app.New(cfg, app.Deps{
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) {
			c.MaxWait = 10 * time.Millisecond
			c.MaxBatch = 50
			return saramakafka.NewGroup(c)
		},
		Registerer: reg,
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()

	in, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "test-raw"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = in.Close() })
	ev, err := os.ReadFile("../../testdata/public-audit/falco/create_clusterrole.json")
	require.NoError(t, err)

	const rounds, perRound = 8, 50
	produceRound := func(r int) {
		recs := make([]kafka.Record, perRound)
		for i := range recs {
			id := fmt.Sprintf("r%d-%d", r, i)
			v := bytes.Replace(ev, []byte(`"auditID":"`), []byte(`"auditID":"`+id+`-`), 1)
			recs[i] = kafka.Record{Topic: cfg.Topics.Raw, Key: []byte(id), Value: v,
				Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte("c1")}}}
		}
		require.NoError(t, in.Produce(ctx, recs...))
	}
	caughtUp := func(n int) {
		require.Eventually(t, func() bool {
			return counterValue(t, reg, "auditpipe_processor_records_total", "accepted") >= float64(n)
		}, 40*time.Second, 10*time.Millisecond, "processor did not catch up to %d records", n)
	}
	// Round 0 is processed under the Request policy.
	produceRound(0)
	caughtUp(perRound)
	// Then produce in rounds and change the policy between rounds without
	// waiting for the processor: changes land while batches are in flight.
	policies := []string{metadataPolicy, brokenPolicy, requestPolicy, metadataPolicy}
	refused := 0.0
	for r := 1; r < rounds-1; r++ {
		writeFile(t, polFile, policies[r%len(policies)])
		produceRound(r)
		if policies[r%len(policies)] == brokenPolicy {
			// The watcher must see the broken file before it is fixed.
			refused++
			require.Eventually(t, func() bool {
				return counterValue(t, reg, "auditpipe_processor_policy_reloads_total", "refused") >= refused
			}, 10*time.Second, 5*time.Millisecond, "broken policy not noticed")
		} else {
			time.Sleep(15 * time.Millisecond)
		}
	}
	// Make the last change certain to be in force before the last round,
	// so that its level is known.
	writeFile(t, polFile, metadataPolicy)
	require.NoError(t, a.ReloadPolicy())
	produceRound(rounds - 1)
	caughtUp(rounds * perRound)

	// Read the events topic with a separate group: every input once at
	// least (at-least-once: a rebalance may repeat a batch).
	seen := map[string]string{}
	var mu sync.Mutex
	out, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "check-" + suffix, Topics: []string{cfg.Topics.Events},
		MaxWait: 10 * time.Millisecond}.WithDefaults())
	require.NoError(t, err)
	t.Cleanup(func() { _ = out.Close() })
	octx, ocancel := context.WithCancel(ctx)
	go func() {
		_ = out.Run(octx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range b.Records {
				var pe schemas.ProcessedEvent
				if err := json.Unmarshal(r.Value, &pe); err == nil {
					seen[pe.AuditID] = pe.Level
				}
			}
			return nil
		}))
	}()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == rounds*perRound }, 40*time.Second, 20*time.Millisecond,
		"events topic misses records")
	ocancel()
	mu.Lock()
	for id, level := range seen {
		switch {
		case strings.HasPrefix(id, "r0-"):
			require.Equal(t, "Request", level, id)
		case strings.HasPrefix(id, fmt.Sprintf("r%d-", rounds-1)):
			require.Equal(t, "Metadata", level, id)
		default:
			require.Contains(t, []string{"Request", "Metadata"}, level, id)
		}
	}
	mu.Unlock()

	require.GreaterOrEqual(t, counterValue(t, reg, "auditpipe_processor_policy_reloads_total", "applied"), 2.0)
	require.Contains(t, logs.String(), "policy reload refused; the previous policies stay in force")
	require.Contains(t, logs.String(), "Loud")
	cancel()
	require.NoError(t, <-runErr)
}

// counterValue reads the counter name{<one label>=label} from reg.
func counterValue(tb testing.TB, reg prometheus.Gatherer, name, label string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMetricsLint checks the names and help of every metric the processor
// registers, the reload counter included.
func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	a, err := app.New(config(t), app.Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return &recorder{}, nil }, Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Equal(t, 0.0, counterValue(t, reg, "auditpipe_processor_policy_reloads_total", app.ReloadApplied))
	require.NoError(t, a.ReloadPolicy())
	require.Equal(t, 1.0, counterValue(t, reg, "auditpipe_processor_policy_reloads_total", app.ReloadApplied))
}

func TestExactlyOnceNeedsTransactor(t *testing.T) {
	cfg := config(t)
	cfg.Delivery = app.DeliveryExactlyOnce
	_, err := app.New(cfg, app.Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return &recorder{}, nil }})
	require.ErrorContains(t, err, "transactor")
	cfg.Delivery = "twice"
	require.ErrorContains(t, cfg.Validate(), "delivery")
}
