package app_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// TestRunOnKafka runs the consumer as cmd/consumer does (app.Run, one
// group member per sink) on the in-process broker, or on
// AUDITPIPE_TEST_KAFKA_BROKERS: with cls-local refusing everything, the
// local store still takes every event and its group commits them while the
// CLS group commits nothing; after the outage CLS gets every event. The
// store's retention runs meanwhile: events past maxAge go, and
// auditpipe_localstore_used_bytes follows the store.
func TestRunOnKafka(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := app.DefaultConfig()
	cfg.API.Listen = "" // no search API here
	cfg.Kafka.Brokers = brokers
	cfg.Topic = "audit.events." + suffix
	cfg.Group = "consumer-" + suffix
	// SQLite: the store is read back through a connection of its own
	// (storeCount, usedBytes), and used_bytes is SQLite's pages in use.
	dbPath := filepath.Join(t.TempDir(), "events.db")
	cfg.Local.Engine, cfg.Local.Path = eventstore.EngineSQLite, dbPath
	cfg.Local.MaxAge = app.Duration(time.Hour)
	cfg.Local.RetentionInterval = app.Duration(100 * time.Millisecond)
	cfg.CLS.Mode = app.CLSLocal
	cfg.CLS.RetryBase = app.Duration(50 * time.Millisecond)
	cfg.CLS.RetryMax = app.Duration(300 * time.Millisecond)

	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: cfg.Topic, Partitions: 2, ReplicationFactor: 1}))

	reg := prometheus.NewRegistry()
	a, err := app.New(cfg, app.Deps{
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) {
			c.MaxWait = 20 * time.Millisecond
			return saramakafka.NewGroup(c)
		},
		Registerer: reg,
		Logger:     slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	srv, _ := a.CLSLocal()
	const cluster = "c1"
	srv.FailAlways("local-"+cluster, clslocal.FaultUnavailable)

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	defer func() { stop(); <-done; require.NoError(t, a.Close()) }()

	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "test-producer"})
	require.NoError(t, err)
	defer p.Close()
	const oldN, newN = 30, 300
	var recs []kafka.Record
	for i := range oldN + newN {
		ts := time.Now()
		if i < oldN {
			ts = ts.Add(-2 * time.Hour)
		}
		recs = append(recs, kafka.Record{Topic: cfg.Topic, Key: []byte(cluster), Value: eventgen.Event(cluster, fmt.Sprintf("id-%04d", i), 1200, ts)})
	}
	require.NoError(t, p.Produce(ctx, recs...))

	committed := func(group string) int64 {
		m, err := admin.CommittedOffsets(ctx, group, cfg.Topic)
		require.NoError(t, err)
		var sum int64
		for _, v := range m {
			sum += v
		}
		return sum
	}
	// CLS is down: the local store's group still commits everything.
	require.Eventually(t, func() bool { return committed(cfg.SinkGroupID(app.SinkLocal)) == oldN+newN }, time.Minute, 50*time.Millisecond)
	require.Eventually(t, func() bool { return storeCount(t, dbPath) == newN }, 10*time.Second, 50*time.Millisecond,
		"the recent events are stored, the old ones pruned by age")
	require.Zero(t, committed(cfg.SinkGroupID(app.SinkCLS)), "CLS's group commits nothing CLS did not take")
	require.Zero(t, srv.LogCount("local-"+cluster))
	require.Equal(t, float64(oldN), gauge(t, reg, "auditpipe_localstore_pruned_events_total", "age"))
	require.Eventually(t, func() bool {
		return gauge(t, reg, "auditpipe_localstore_used_bytes", "") == float64(usedBytes(t, dbPath))
	}, 10*time.Second, 50*time.Millisecond, "used_bytes is measured without a size limit")

	// CLS is back: it gets every event, old ones included (retention is
	// the local store's).
	srv.Heal("local-" + cluster)
	require.Eventually(t, func() bool { return committed(cfg.SinkGroupID(app.SinkCLS)) == oldN+newN }, time.Minute, 50*time.Millisecond)
	require.GreaterOrEqual(t, srv.LogCount("local-"+cluster), int64(oldN+newN))
}

func openRO(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func storeCount(t *testing.T, path string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, openRO(t, path).QueryRow(`SELECT count(*) FROM events`).Scan(&n))
	return n
}

// usedBytes measures the store's pages in use through its own connection.
func usedBytes(t *testing.T, path string) int64 {
	t.Helper()
	db := openRO(t, path)
	var pages, free, size int64
	require.NoError(t, db.QueryRow("PRAGMA page_count").Scan(&pages))
	require.NoError(t, db.QueryRow("PRAGMA freelist_count").Scan(&free))
	require.NoError(t, db.QueryRow("PRAGMA page_size").Scan(&size))
	return (pages - free) * size
}

// gauge reads a gauge or counter from reg; label, when set, is the value
// of its only label.
func gauge(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestUpgradePositionsCLSGroup: before 0018 one group (Config.Group) fed
// both sinks. At the first start after the upgrade the CLS group has no
// commits; Run commits the shared group's offsets to it, so CLS gets only
// what the old consumer had not delivered, not the topic's history. A
// later start keeps the CLS group's own offsets.
func TestUpgradePositionsCLSGroup(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := app.DefaultConfig()
	cfg.API.Listen = "" // no search API here
	cfg.Kafka.Brokers = brokers
	cfg.Topic = "audit.events." + suffix
	cfg.Group = "consumer-" + suffix
	// SQLite: the store is counted through a connection of its own
	// (storeCount).
	cfg.Local.Engine, cfg.Local.Path = eventstore.EngineSQLite, filepath.Join(t.TempDir(), "events.db")
	cfg.CLS.Mode = app.CLSLocal

	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: cfg.Topic, Partitions: 1, ReplicationFactor: 1}))
	offsets, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers, ClientID: "test-offsets"})
	require.NoError(t, err)
	defer offsets.Close()
	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "test-producer"})
	require.NoError(t, err)
	defer p.Close()
	produce := func(from, n int) {
		var recs []kafka.Record
		for i := from; i < from+n; i++ {
			recs = append(recs, kafka.Record{Topic: cfg.Topic, Key: []byte("c1"), Value: eventgen.Event("c1", fmt.Sprintf("id-%04d", i), 900, time.Now())})
		}
		require.NoError(t, p.Produce(ctx, recs...))
	}
	produce(0, 200)
	// The old consumer had both sinks take the first 120.
	require.NoError(t, offsets.ResetOffsets(ctx, cfg.Group, cfg.Topic, map[int32]int64{0: 120}))

	run := func(wantCommitted int64) *clslocal.Server {
		a, err := app.New(cfg, app.Deps{
			NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) {
				c.MaxWait = 20 * time.Millisecond
				return saramakafka.NewGroup(c)
			},
			Offsets: offsets,
			Logger:  slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		srv, _ := a.CLSLocal()
		runCtx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(runCtx) }()
		defer func() { stop(); <-done; require.NoError(t, a.Close()) }()
		for _, g := range []string{cfg.SinkGroupID(app.SinkLocal), cfg.SinkGroupID(app.SinkCLS)} {
			require.Eventually(t, func() bool {
				m, err := offsets.CommittedOffsets(ctx, g, cfg.Topic)
				require.NoError(t, err)
				return m[0] == wantCommitted
			}, time.Minute, 50*time.Millisecond, "group %s", g)
		}
		return srv
	}
	srv := run(200)
	require.Equal(t, int64(80), srv.LogCount("local-c1"), "CLS got only what the shared group had not committed")
	require.Equal(t, int64(80), storeCount(t, cfg.Local.Path), "the store's group is the shared one: it went on from 120")

	// A restart: the CLS group has its own commits and is not moved.
	produce(200, 10)
	srv = run(210)
	require.Equal(t, int64(10), srv.LogCount("local-c1"))
}
