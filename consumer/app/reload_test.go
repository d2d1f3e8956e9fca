package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// TestReloadRoutesCLSByNewFleet: Reload (SIGHUP) re-reads the fleet
// registry under the running CLS sink: after a cluster is moved to another
// topic, its new events land there and the old topic gets no more. A
// broken registry (an unknown key, an invalid CLS target) is refused with
// an error and the routing in force stays.
func TestReloadRoutesCLSByNewFleet(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	fleetFile := filepath.Join(t.TempDir(), "fleet.yaml")
	writeFleet := func(content string) {
		t.Helper()
		require.NoError(t, os.WriteFile(fleetFile, []byte(content), 0o600))
	}
	writeFleet("clusters:\n  c1:\n    cls: {topicID: topic-old}\n")

	cfg := app.DefaultConfig()
	cfg.API.Listen = ""
	cfg.Kafka.Brokers = brokers
	cfg.Topic = "audit.events." + suffix
	cfg.Group = "consumer-" + suffix
	cfg.Local.Enabled = false
	cfg.CLS.Mode = app.CLSLocal
	cfg.FleetFile = fleetFile

	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: cfg.Topic, Partitions: 2, ReplicationFactor: 1}))

	a, err := app.New(cfg, app.Deps{
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) {
			c.MaxWait = 20 * time.Millisecond
			return saramakafka.NewGroup(c)
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	srv, _ := a.CLSLocal()
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	defer func() { stop(); <-done; require.NoError(t, a.Close()) }()

	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "test-producer"})
	require.NoError(t, err)
	defer p.Close()
	next := 0
	produce := func(n int) {
		t.Helper()
		var recs []kafka.Record
		for range n {
			recs = append(recs, kafka.Record{Topic: cfg.Topic, Key: []byte("c1"), Value: eventgen.Event("c1", fmt.Sprintf("id-%04d", next), 600, time.Now())})
			next++
		}
		require.NoError(t, p.Produce(ctx, recs...))
	}
	// wait until CLS holds want events of c1 in topic; the committed
	// offsets then show nothing is in flight.
	wait := func(topic string, want int64) {
		t.Helper()
		require.Eventually(t, func() bool { return srv.LogCount(topic) == want }, time.Minute, 20*time.Millisecond,
			"topic %s: %d logs, want %d", topic, srv.LogCount(topic), want)
		require.Eventually(t, func() bool {
			m, err := admin.CommittedOffsets(ctx, cfg.SinkGroupID(app.SinkCLS), cfg.Topic)
			require.NoError(t, err)
			var sum int64
			for _, v := range m {
				sum += v
			}
			return sum == int64(next)
		}, time.Minute, 20*time.Millisecond)
	}

	produce(40)
	wait("topic-old", 40)

	writeFleet("clusters:\n  c1:\n    cls: {topicID: topic-new}\n")
	require.NoError(t, a.Reload())
	produce(30)
	wait("topic-new", 30)
	require.Equal(t, int64(40), srv.LogCount("topic-old"), "the old topic gets nothing after the reload")

	for name, broken := range map[string]string{
		"unknown key":        "clusters:\n  c1:\n    cls: {topicId: topic-typo}\n",
		"invalid cls target": "clusters:\n  c1:\n    cls: {topicID: topic-bad, logset: l, topicName: n}\n",
		"invalid cluster id": "clusters:\n  C1:\n    cls: {topicID: topic-bad}\n",
	} {
		writeFleet(broken)
		err := a.Reload()
		require.Error(t, err, name)
		require.ErrorContains(t, err, fleetFile, name)
	}
	produce(20)
	wait("topic-new", 50)
	require.Equal(t, int64(40), srv.LogCount("topic-old"))
	require.Zero(t, srv.LogCount("topic-typo")+srv.LogCount("topic-bad")+srv.LogCount("local-c1"),
		"a refused registry routes nothing")
}
