package app_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// TestReadiness: /readyz is false before the sinks' groups have joined,
// true once they have, and false while the CLS sink's server (a local CLS
// server, stopped) does not answer, with the local sink still fine.
func TestReadiness(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	upload := clslocal.New(clslocal.Options{Credentials: []clslocal.Credential{{SecretID: "AKIDr", SecretKey: "kr"}}})
	clsSrv := httptest.NewServer(upload.Handler())
	defer clsSrv.Close()

	cfg := app.DefaultConfig()
	cfg.API.Listen = "" // no search API here
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.ClientID = "ready-" + suffix
	cfg.Topic = "audit.events." + suffix
	cfg.Group = "consumer-" + suffix
	cfg.Local.Path = filepath.Join(t.TempDir(), "store")
	cfg.CLS = app.CLSConfig{Mode: app.CLSCloud, Endpoint: clsSrv.URL, SecretID: "AKIDr", SecretKey: "kr",
		DefaultTopicID: "t1", RetryBase: app.Duration(20 * time.Millisecond), RetryMax: app.Duration(100 * time.Millisecond)}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: cfg.Topic, Partitions: 2, ReplicationFactor: 1}))
	offsets, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers, ClientID: "ready-offsets"})
	require.NoError(t, err)
	defer offsets.Close()

	health := telemetry.NewHealth()
	a, err := app.New(cfg, app.Deps{
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) {
			c.MaxWait = 20 * time.Millisecond
			return saramakafka.NewGroup(c)
		},
		Offsets: offsets, Health: health, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	failed := health.Ready(ctx)
	require.Contains(t, failed, "consumer-local-group", "not ready before the groups join")
	require.Contains(t, failed, "consumer-cls-group")

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	defer func() { stop(); <-done; require.NoError(t, a.Close()) }()
	require.Eventually(t, func() bool { return len(health.Ready(ctx)) == 0 }, 30*time.Second, 50*time.Millisecond,
		"ready once both groups joined and CLS answers")

	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "test-producer"})
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.Produce(ctx, kafka.Record{Topic: cfg.Topic, Key: []byte("c1"), Value: eventgen.Event("c1", "a1", 900, time.Now())}))
	require.Eventually(t, func() bool { return upload.LogCount("t1") == 1 }, 30*time.Second, 20*time.Millisecond)
	require.Empty(t, health.Ready(ctx))

	// CLS goes away: not ready, because the endpoint does not answer and,
	// once an event comes, because writes fail. The local sink is fine.
	clsSrv.CloseClientConnections()
	clsSrv.Close()
	require.NoError(t, p.Produce(ctx, kafka.Record{Topic: cfg.Topic, Key: []byte("c1"), Value: eventgen.Event("c1", "a2", 900, time.Now())}))
	require.Eventually(t, func() bool {
		f := health.Ready(ctx)
		return f["consumer-cls-endpoint"] != "" && f["consumer-cls-sends"] != ""
	}, 30*time.Second, 50*time.Millisecond, "not ready while the CLS sink is down")
	f := health.Ready(ctx)
	require.NotContains(t, f, "consumer-local-sink")
	require.NotContains(t, f, "consumer-local-group")
}
