package app_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/schemas"
)

// TestReadiness: /readyz is false before the group joined, true once it
// has, and false again while Kafka (where the processor writes) is down.
func TestReadiness(t *testing.T) {
	broker := kafkatest.StartBroker(t, embedded.Config{})
	brokers := broker.Addrs()
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policy.yaml")
	writeFile(t, polFile, requestPolicy)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.ClientID = "ready-" + suffix
	cfg.PolicyFile = polFile
	cfg.Group = "ready-" + suffix
	cfg.Topics = schemas.Topics{Raw: "raw-" + suffix, Events: "events-" + suffix, DLQ: "dlq-" + suffix}
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	for _, topic := range []string{cfg.Topics.Raw, cfg.Topics.Events, cfg.Topics.DLQ} {
		require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}))
	}
	offsets, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers, ClientID: "ready-offsets"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = offsets.Close() })
	health := telemetry.NewHealth()
	a, err := app.New(cfg, app.Deps{
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
		NewGroup:    func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return saramakafka.NewGroup(c) },
		Offsets:     offsets, Health: health, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })

	failed := health.Ready(ctx)
	require.Contains(t, failed, "processor-group", "not ready before Run")

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	require.Eventually(t, func() bool { return len(health.Ready(ctx)) == 0 }, 30*time.Second, 50*time.Millisecond,
		"ready once the group has joined")

	broker.Close()
	require.Eventually(t, func() bool {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		return health.Ready(cctx)["processor-group"] != ""
	}, 30*time.Second, 100*time.Millisecond, "not ready while Kafka is down")
	stop()
	require.NoError(t, <-done)
	require.Contains(t, health.Ready(ctx), "processor-group", "not ready after Run returned")
}
