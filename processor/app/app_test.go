package app_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// recorder is an in-memory kafka.Producer, the test double for the output
// port.
type recorder struct {
	mu      sync.Mutex
	records []kafka.Record
	closed  int
}

func (r *recorder) Produce(_ context.Context, records ...kafka.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, records...)
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
	return nil
}

func config(tb testing.TB) app.Config {
	tb.Helper()
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = []string{"127.0.0.1:9092"}
	cfg.PolicyFile = "../policies/tke-default.yaml"
	return cfg
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, config(t).Validate())
	err := app.Config{}.Validate()
	require.Error(t, err)
	for _, want := range []string{"brokers", "group", "policy", "topics"} {
		require.ErrorContains(t, err, want)
	}
	cfg := config(t)
	cfg.Topics.DLQ = cfg.Topics.Events
	require.ErrorContains(t, cfg.Validate(), "dlq")
}

func TestKafkaConfigs(t *testing.T) {
	cfg := config(t)
	g := cfg.GroupConfig()
	require.NoError(t, g.Validate())
	require.Equal(t, []string{schemas.DefaultRawTopic}, g.Topics)
	require.Equal(t, app.DefaultGroup, g.Group)
	require.Equal(t, cfg.Kafka.Brokers, g.Brokers)
	p := cfg.ProducerConfig()
	require.Greater(t, p.MaxMessageBytes, cfg.MaxEventBytes)
	require.Equal(t, cfg.Kafka.Brokers, p.Brokers)
}

func TestNewHandlerAndReload(t *testing.T) {
	prod := &recorder{}
	var gotProducerCfg kafka.ProducerConfig
	a, err := app.New(config(t), app.Deps{
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { gotProducerCfg = c; return prod, nil },
		Registerer:  prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:9092"}, gotProducerCfg.Brokers)

	ev, err := os.ReadFile("../../testdata/public-audit/falco/create_deployment.json")
	require.NoError(t, err)
	rec := kafka.Record{Offset: 7, Value: ev, Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte("c1")}}}
	require.NoError(t, a.Handler().Handle(t.Context(), kafka.Batch{Topic: schemas.DefaultRawTopic, Records: []kafka.Record{rec}}))
	require.Len(t, prod.records, 1)
	require.Equal(t, schemas.DefaultEventsTopic, prod.records[0].Topic)

	require.NoError(t, a.ReloadPolicy())
	require.ErrorContains(t, a.Run(t.Context()), "no consumer group")

	require.NoError(t, a.Close())
	require.NoError(t, a.Close())
	require.Equal(t, 1, prod.closed)
}

func TestReloadKeepsPolicyOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	good, err := os.ReadFile("../policies/lean.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, good, 0o600))
	cfg := config(t)
	cfg.PolicyFile = path
	a, err := app.New(cfg, app.Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return &recorder{}, nil }})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })
	require.NoError(t, os.WriteFile(path, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrulez: []\n"), 0o600))
	require.ErrorContains(t, a.ReloadPolicy(), `unknown field "rulez"`)
}

func TestNewFailures(t *testing.T) {
	okProducer := func(kafka.ProducerConfig) (kafka.Producer, error) { return &recorder{}, nil }

	cfg := config(t)
	cfg.PolicyFile = "../policies/missing.yaml"
	_, err := app.New(cfg, app.Deps{NewProducer: okProducer})
	require.ErrorContains(t, err, "missing.yaml")

	_, err = app.New(config(t), app.Deps{})
	require.ErrorContains(t, err, "producer")

	_, err = app.New(config(t), app.Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return nil, errors.New("no route") }})
	require.ErrorContains(t, err, "no route")

	// A failing group constructor must not leak the producer.
	prod := &recorder{}
	_, err = app.New(config(t), app.Deps{
		NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return prod, nil },
		NewGroup:    func(kafka.GroupConfig) (kafka.GroupConsumer, error) { return nil, errors.New("bad group") },
	})
	require.ErrorContains(t, err, "bad group")
	require.Equal(t, 1, prod.closed)
}
