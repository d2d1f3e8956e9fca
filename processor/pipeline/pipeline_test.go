package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

const fixtures = "../../testdata/public-audit/falco"

var clock = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

// recorder is an in-memory kafka.Producer: the test double for the
// pipeline's output port.
type recorder struct {
	mu    sync.Mutex
	calls [][]kafka.Record
	err   error
}

func (r *recorder) Produce(_ context.Context, records ...kafka.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, records)
	return r.err
}

func (r *recorder) Close() error { return nil }

func (r *recorder) records() []kafka.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []kafka.Record
	for _, c := range r.calls {
		all = append(all, c...)
	}
	return all
}

type harness struct {
	p       *pipeline.Pipeline
	prod    *recorder
	reg     *prometheus.Registry
	metrics *pipeline.Metrics
	logs    *bytes.Buffer
}

func newHarness(tb testing.TB, policyFile string, cfg pipeline.Config) *harness {
	tb.Helper()
	pol, err := policy.LoadFile(filepath.Join("..", "policies", policyFile))
	require.NoError(tb, err)
	reg := prometheus.NewPedanticRegistry()
	m, err := pipeline.NewMetrics(reg)
	require.NoError(tb, err)
	h := &harness{prod: &recorder{}, reg: reg, metrics: m, logs: &bytes.Buffer{}}
	if cfg.Topics == (schemas.Topics{}) {
		cfg.Topics = schemas.DefaultTopics()
	}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.p, err = pipeline.New(cfg, pol, h.prod, m, logger, pipeline.WithClock(func() time.Time { return clock }))
	require.NoError(tb, err)
	return h
}

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	require.NoError(tb, err)
	return b
}

// raw builds a record as the producer writes it to the raw topic.
func raw(offset int64, value []byte) kafka.Record {
	return kafka.Record{
		Topic: schemas.DefaultRawTopic, Partition: 3, Offset: offset,
		Key:   []byte("key-" + strconv.FormatInt(offset, 10)),
		Value: value,
		Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte("cls-1")},
			{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
			{Key: schemas.HeaderReceivedAt, Value: []byte("2026-01-02T03:00:00.123456789Z")},
			{Key: schemas.HeaderSchemaVersion, Value: []byte("1")},
		},
	}
}

func batch(records ...kafka.Record) kafka.Batch {
	return kafka.Batch{Topic: schemas.DefaultRawTopic, Partition: 3, Records: records}
}

func decodeOut(tb testing.TB, r kafka.Record) schemas.ProcessedEvent {
	tb.Helper()
	var pe schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(r.Value, &pe), "%s", r.Value)
	return pe
}

func TestAcceptedEvents(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	b := batch(
		raw(10, fixture(t, "create_clusterrole.json")),             // RequestResponse -> RequestResponse
		raw(11, fixture(t, "create_configmap.json")),               // RequestResponse -> Metadata (rule 7)
		raw(12, fixture(t, "create_deployment.json")),              // Request stays Request
		raw(13, fixture(t, "create_secret.json")),                  // v1, Metadata stays Metadata
		raw(14, fixture(t, "minikube_creates_namespace_foo.json")), // v1beta1
	)
	require.NoError(t, h.p.Handle(t.Context(), b))
	require.Len(t, h.prod.calls, 1, "one Produce call per batch")
	out := h.prod.records()
	require.Len(t, out, 5)

	want := []struct{ level, original string }{
		{policy.LevelRequestResponse, policy.LevelRequestResponse},
		{policy.LevelMetadata, policy.LevelRequestResponse},
		{policy.LevelRequest, policy.LevelRequest},
		{policy.LevelMetadata, policy.LevelMetadata},
		{policy.LevelRequest, policy.LevelRequest},
	}
	hashes := map[string]bool{}
	for i, r := range out {
		require.Equal(t, schemas.DefaultEventsTopic, r.Topic)
		require.Equal(t, "cls-1", string(r.Key))
		require.Equal(t, "cls-1", string(r.HeaderValue(schemas.HeaderCluster)))
		require.Equal(t, schemas.SourceWebhook, string(r.HeaderValue(schemas.HeaderSource)))
		require.Equal(t, "2026-01-02T03:00:00.123456789Z", string(r.HeaderValue(schemas.HeaderReceivedAt)))
		require.Equal(t, "1", string(r.HeaderValue(schemas.HeaderSchemaVersion)))

		pe := decodeOut(t, r)
		// kind and apiVersion are as sent (the v1beta1 fixture stays
		// v1beta1; items of a webhook EventList have none).
		var sent schemas.Event
		require.NoError(t, json.Unmarshal(b.Records[i].Value, &sent))
		require.Equal(t, sent.Kind, pe.Kind)
		require.Equal(t, sent.APIVersion, pe.APIVersion)
		require.Equal(t, want[i].level, pe.Level, "record %d", i)
		require.Equal(t, want[i].original, pe.Pipeline.OriginalLevel, "record %d", i)
		// The hash itself is tested in identity_test.go; here: it is there,
		// and five different events have five different ones.
		require.Regexp(t, `^[0-9a-f]{64}$`, pe.Pipeline.ContentHash, "record %d", i)
		require.False(t, hashes[pe.Pipeline.ContentHash], "record %d has another record's content hash", i)
		hashes[pe.Pipeline.ContentHash] = true
		pe.Pipeline.ContentHash = ""
		require.Equal(t, schemas.Pipeline{
			SchemaVersion: schemas.SchemaVersion,
			Cluster:       "cls-1",
			Source:        schemas.SourceWebhook,
			ReceivedAt:    time.Date(2026, 1, 2, 3, 0, 0, 123456789, time.UTC),
			ProcessedAt:   clock,
			OriginalLevel: want[i].original,
			Origin:        schemas.Origin{Topic: schemas.DefaultRawTopic, Partition: 3, Offset: int64(10 + i)},
		}, withoutEnrichment(pe.Pipeline))
		require.NotNil(t, pe.Pipeline.Principal, "record %d is enriched", i)
		switch pe.Level {
		case policy.LevelMetadata:
			require.Nil(t, pe.RequestObject)
			require.Nil(t, pe.ResponseObject)
		case policy.LevelRequest:
			require.Nil(t, pe.ResponseObject)
		}
	}
	// The configmap's sensitive body is gone from the output record bytes.
	require.NotContains(t, string(out[1].Value), "requestObject")
	// Bodies kept are the apiserver's bytes.
	require.Contains(t, string(out[0].Value), `"rules":[`)

	require.Equal(t, 5.0, testutil.ToFloat64(h.metrics.Records.WithLabelValues(pipeline.OutcomeAccepted)))
	var in int
	for _, r := range b.Records {
		in += len(r.Value)
	}
	require.Equal(t, float64(in), testutil.ToFloat64(h.metrics.Bytes.WithLabelValues("in")))
}

func TestPolicyDrops(t *testing.T) {
	h := newHarness(t, "lean.yaml", pipeline.Config{})
	// A node reading a pod: dropped by lean.yaml's rule 1.
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, fixture(t, "create_nginx_pod_unsensitive_mount.json")))))
	require.Empty(t, h.prod.calls, "nothing to produce")
	require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.Records.WithLabelValues(pipeline.OutcomeDroppedPolicy)))
	require.Contains(t, h.logs.String(), "event dropped by policy")
}

func TestSetPolicy(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	ev := fixture(t, "create_clusterrole.json")
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, ev))))
	lean, err := policy.LoadFile("../policies/lean.yaml")
	require.NoError(t, err)
	require.NoError(t, h.p.SetPolicy(lean))
	require.Error(t, h.p.SetPolicy(nil))
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(2, ev))))
	out := h.prod.records()
	require.Len(t, out, 2)
	require.Equal(t, policy.LevelRequestResponse, decodeOut(t, out[0]).Level)
	require.Equal(t, policy.LevelRequest, decodeOut(t, out[1]).Level, "lean keeps RBAC writes at Request")
}

func TestDLQ(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{MaxEventBytes: 2048})
	noCluster := raw(5, fixture(t, "create_secret.json"))
	noCluster.Headers = noCluster.Headers[1:]
	badTime := raw(6, fixture(t, "create_secret.json"))
	badTime.Headers[2].Value = []byte("yesterday")
	// Metadata so large that dropping bodies does not help.
	var huge map[string]any
	require.NoError(t, json.Unmarshal(fixture(t, "create_secret.json"), &huge))
	huge["annotations"] = map[string]string{"x": strings.Repeat("a", 4096)}
	hugeValue, err := json.Marshal(huge)
	require.NoError(t, err)

	cases := []struct {
		rec    kafka.Record
		reason string
	}{
		{raw(0, fixture(t, "fal_01_003.json")), `not an audit event: cannot unmarshal number into Go struct field Event.kind of type string`},
		{raw(1, []byte("{x")), `not JSON: invalid character 'x' looking for beginning of object key string at offset 2`},
		{raw(2, fixture(t, "create_configmap_sensitive_values.json")), `not JSON: invalid character '{' after top-level value at offset`},
		{raw(3, []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"}}`)), `not an audit event: kind "Pod"`},
		{raw(4, []byte(`{"kind":"Event","level":"Metadata"}`)), `not an audit event: missing auditID, stage, verb`},
		{noCluster, "missing header auditpipe.cluster"},
		{badTime, "bad header auditpipe.received-at"},
		{raw(7, hugeValue), "too large: "},
		{raw(8, []byte(strings.Replace(string(fixture(t, "create_secret.json")), `"Metadata"`, `"Loud"`, 1))), `policy: event level "Loud" is not an audit level`},
	}
	var recs []kafka.Record
	for _, c := range cases {
		recs = append(recs, c.rec)
	}
	require.NoError(t, h.p.Handle(t.Context(), batch(recs...)))
	require.Len(t, h.prod.calls, 1)
	out := h.prod.records()
	require.Len(t, out, len(cases))
	for i, r := range out {
		in := cases[i].rec
		require.Equal(t, schemas.DefaultDLQTopic, r.Topic)
		require.Equal(t, in.Value, r.Value, "original bytes")
		require.Equal(t, in.Key, r.Key)
		require.Contains(t, string(r.HeaderValue(schemas.HeaderDLQReason)), cases[i].reason, "record %d", i)
		require.Equal(t, "processor", string(r.HeaderValue(schemas.HeaderDLQStage)))
		require.Equal(t, "audit.raw/3/"+strconv.FormatInt(in.Offset, 10), string(r.HeaderValue(schemas.HeaderDLQOrigin)))
		require.Equal(t, in.Headers, r.Headers[:len(in.Headers)], "original headers first")
		require.Len(t, r.Headers, len(in.Headers)+3)
	}
	require.Equal(t, float64(len(cases)), testutil.ToFloat64(h.metrics.Records.WithLabelValues(pipeline.OutcomeDLQ)))
	require.Contains(t, h.logs.String(), "record sent to DLQ")
}

// TestOversizedBodiesAreDropped: an event over the limit because of its
// bodies is kept at Metadata, marked as the apiserver marks truncated
// events.
func TestOversizedBodiesAreDropped(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{MaxEventBytes: 2048})
	v := fixture(t, "create_nginx_pod_privileged_2nd_container.json")
	require.Greater(t, len(v), 2048)
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, v))))
	out := h.prod.records()
	require.Len(t, out, 1)
	require.Equal(t, schemas.DefaultEventsTopic, out[0].Topic)
	require.LessOrEqual(t, len(out[0].Value), 2048)
	pe := decodeOut(t, out[0])
	require.Equal(t, policy.LevelMetadata, pe.Level)
	require.Equal(t, policy.LevelRequestResponse, pe.Pipeline.OriginalLevel)
	require.Nil(t, pe.RequestObject)
	require.Nil(t, pe.ResponseObject)
	require.Equal(t, "true", pe.Annotations["audit.k8s.io/truncated"])
	require.True(t, pe.Pipeline.Truncated)
	require.Equal(t, "allow", pe.Annotations["authorization.k8s.io/decision"])
	require.Contains(t, h.logs.String(), "bodies dropped")
}

func TestProduceErrorFailsBatch(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	h.prod.err = errors.New("broker down")
	err := h.p.Handle(t.Context(), batch(raw(1, fixture(t, "create_deployment.json")), raw(2, []byte("x"))))
	require.ErrorContains(t, err, "broker down")
	require.ErrorIs(t, err, h.prod.err)
	require.Len(t, h.prod.calls, 1)
	require.Len(t, h.prod.calls[0], 2)
	// Nothing is counted for a batch that will be redelivered.
	require.Zero(t, testutil.ToFloat64(h.metrics.Records.WithLabelValues(pipeline.OutcomeAccepted)))
	require.Zero(t, testutil.ToFloat64(h.metrics.Records.WithLabelValues(pipeline.OutcomeDLQ)))
}

func TestEmptyBatch(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	require.NoError(t, h.p.Handle(t.Context(), batch()))
	require.Empty(t, h.prod.calls)
}

func TestMissingReceivedAtFallsBackToRecordTime(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	r := raw(1, fixture(t, "create_deployment.json"))
	r.Headers = []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte("c2")}}
	r.Time = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, h.p.Handle(t.Context(), batch(r)))
	pe := decodeOut(t, h.prod.records()[0])
	require.Equal(t, r.Time, pe.Pipeline.ReceivedAt)
	require.Equal(t, "c2", pe.Pipeline.Cluster)
}

func TestNewValidates(t *testing.T) {
	pol, err := policy.LoadFile("../policies/tke-default.yaml")
	require.NoError(t, err)
	_, err = pipeline.New(pipeline.Config{}, pol, &recorder{}, nil, nil)
	require.ErrorContains(t, err, "topics")
	require.ErrorContains(t, pipeline.Config{Topics: schemas.DefaultTopics(), MaxEventBytes: -1}.Validate(), "negative")
	_, err = pipeline.New(pipeline.Config{Topics: schemas.DefaultTopics()}, pol, nil, nil, nil)
	require.ErrorContains(t, err, "producer")
	_, err = pipeline.New(pipeline.Config{Topics: schemas.DefaultTopics()}, nil, &recorder{}, nil, nil)
	require.ErrorContains(t, err, "policy")
	// Defaults for metrics, logger and clock.
	prod := &recorder{}
	p, err := pipeline.New(pipeline.Config{Topics: schemas.DefaultTopics()}, pol, prod, nil, nil)
	require.NoError(t, err)
	ev, err := os.ReadFile(filepath.Join(fixtures, "create_deployment.json"))
	require.NoError(t, err)
	before := time.Now()
	require.NoError(t, p.Handle(t.Context(), batch(raw(1, ev))))
	require.False(t, decodeOut(t, prod.records()[0]).Pipeline.ProcessedAt.Before(before.Truncate(time.Microsecond)))
}

func TestMetricsLint(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, fixture(t, "create_deployment.json")))))
	problems, err := testutil.GatherAndLint(h.reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	for _, c := range []prometheus.Collector{h.metrics.Records, h.metrics.Bytes, h.metrics.BatchDuration} {
		problems, err := testutil.CollectAndLint(c)
		require.NoError(t, err)
		require.Empty(t, problems)
	}
	n, err := testutil.GatherAndCount(h.reg, "auditpipe_processor_records_total", "auditpipe_processor_bytes_total", "auditpipe_processor_batch_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 6, n) // 3 outcomes, 2 directions, 1 histogram
	_, err = pipeline.NewMetrics(h.reg)
	var already prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &already, "registering twice is a wiring bug")
}

// withoutEnrichment clears the fields enrich.Fill sets; they have their
// own tests in enrichment_test.go.
func withoutEnrichment(p schemas.Pipeline) schemas.Pipeline {
	p.Principal, p.Impersonated, p.LatencyMs, p.ClusterInfo = nil, nil, nil, nil
	p.Operation, p.Outcome, p.SourceIP, p.SourceIPType = "", "", "", ""
	return p
}
