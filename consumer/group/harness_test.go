package group_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// long reports whether the full-size runs the issue asks for were
// requested (AUDITPIPE_LONG=1); make test runs scaled-down versions.
func long() bool { return os.Getenv("AUDITPIPE_LONG") == "1" }

const (
	partitions = 6
	secretID   = "AKIDgroup"
	secretKey  = "groupkey"
)

// key identifies an event the way the sinks de-duplicate it.
type key struct{ cluster, auditID, stage string }

// env is one test's pipeline tail: a broker with the events topic, one
// local store file, one local CLS server, and replicas of the consumer.
type env struct {
	t       *testing.T
	brokers []string
	admin   *saramakafka.Admin
	group   string
	// topic is the events topic, unique per test: on an external Kafka
	// cluster (make test-kafka) tests share the broker.
	topic  string
	store  *local.Store
	dbPath string
	srv    *clslocal.Server
	url    string
	topics map[string]string // cluster -> CLS topic

	mu       sync.Mutex
	received map[key]int // CLS deliveries per event

	produced map[key]bool
	perPart  map[int32]int64 // records produced per partition
}

func newEnv(t *testing.T, clusters []string, missingTopics ...string) *env {
	t.Helper()
	e := &env{t: t, brokers: kafkatest.Brokers(t), group: "consumer-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		topic:  "audit.events." + strconv.FormatInt(time.Now().UnixNano(), 36),
		topics: map[string]string{}, received: map[key]int{}, produced: map[key]bool{}, perPart: map[int32]int64{}}
	admin, err := saramakafka.NewAdmin(e.brokers, "test-admin")
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	e.admin = admin
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: e.topic, Partitions: partitions, ReplicationFactor: 1}))

	var existing []string
	for _, c := range clusters {
		e.topics[c] = "topic-" + c
		existing = append(existing, "topic-"+c)
	}
	for _, c := range missingTopics {
		e.topics[c] = "topic-" + c
	}
	e.srv = clslocal.New(clslocal.Options{
		Credentials: []clslocal.Credential{{SecretID: secretID, SecretKey: secretKey}},
		Topics:      existing,
		DiscardLogs: true,
		OnLog:       e.onLog,
	})
	hs := httptest.NewServer(e.srv.Handler())
	t.Cleanup(hs.Close)
	e.url = hs.URL

	e.dbPath = filepath.Join(t.TempDir(), "events.db")
	// One Store for every replica of this process: the store is the single
	// writer of its file and serialises their writes.
	e.store, err = local.Open(e.dbPath, local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.store.Close() })
	return e
}

func (e *env) onLog(r clslocal.Received) {
	c, _ := r.Get("auditpipe.cluster")
	id, _ := r.Get("auditID")
	st, _ := r.Get("stage")
	k := key{c, id, st}
	e.mu.Lock()
	e.received[k]++
	e.mu.Unlock()
}

// produce writes n events spread over clusters, keyed by cluster like the
// processor does, in batches of 200.
func (e *env) produce(p kafka.Producer, clusters []string, from, n, size int) {
	e.t.Helper()
	ts := time.Now().UTC()
	batch := make([]kafka.Record, 0, 200)
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		require.NoError(e.t, p.Produce(ctx, batch...))
		batch = batch[:0]
	}
	for i := from; i < from+n; i++ {
		c := clusters[i%len(clusters)]
		id := fmt.Sprintf("%s-%07d", c, i)
		e.mu.Lock()
		e.produced[key{c, id, "ResponseComplete"}] = true
		e.perPart[kafkatest.ReferencePartition([]byte(c), partitions)]++
		e.mu.Unlock()
		batch = append(batch, kafka.Record{Topic: e.topic, Key: []byte(c), Value: eventgen.Event(c, id, size, ts)})
		if len(batch) == cap(batch) {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

func (e *env) producer() kafka.Producer {
	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: e.brokers, ClientID: "test-producer"})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = p.Close() })
	return p
}

// replica is one consumer process's worth of wiring as consumer/app builds
// it: one group member per sink (the local store's in group e.group, CLS's
// in e.group+".cls"), its own CLS sink and registry, the shared store.
type replica struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	gs     []*saramakafka.GroupConsumer
	sink   *cls.Sink
	reg    *prometheus.Registry
}

// sinkGroups are the sinks' group ids, like app.Config.SinkGroupID.
func (e *env) sinkGroups() map[string]string {
	return map[string]string{"local": e.group, "cls": e.group + ".cls"}
}

func (e *env) start(name string) *replica {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("replica", name)
	sink, err := cls.New(cls.Config{
		Endpoint: e.url, SecretID: secretID, SecretKey: secretKey,
		RetryBase: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond, BlockedRetry: 300 * time.Millisecond,
	}, func(c string) (string, bool) { t, ok := e.topics[c]; return t, ok }, reg, logger)
	require.NoError(e.t, err)
	metrics, err := group.NewMetrics(reg)
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, cancel: cancel, done: make(chan struct{}), sink: sink, reg: reg}
	var wg sync.WaitGroup
	for _, s := range []group.Sink{group.NewLocalSink(e.store, logger), sink} {
		g, err := saramakafka.NewGroup(kafka.GroupConfig{
			Brokers: e.brokers, Group: e.sinkGroups()[s.Name()], Topics: []string{e.topic}, ClientID: name + "-" + s.Name(),
			MaxBatch: 500, MaxWait: 20 * time.Millisecond, SessionTimeout: 6 * time.Second,
		})
		require.NoError(e.t, err)
		r.gs = append(r.gs, g)
		h := group.NewSinkHandler(s, metrics, logger.With("sink", s.Name()), group.Retry{Base: 50 * time.Millisecond, Max: time.Second})
		wg.Add(1)
		go func() {
			defer wg.Done()
			kafka.Supervise(ctx, g, h, time.Second, logger)
		}()
	}
	go func() {
		defer close(r.done)
		wg.Wait()
	}()
	e.t.Cleanup(r.stop)
	return r
}

// stop shuts the replica down the way main does: the group finishes its
// in-flight batches, leaves, then the sink closes. Safe twice.
func (r *replica) stop() {
	r.cancel()
	<-r.done
	for _, g := range r.gs {
		_ = g.Close()
	}
	_ = r.sink.Close(5 * time.Second)
}

// committedBy is sink's group's committed offset per partition.
func (e *env) committedBy(sink string) map[int32]int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := e.admin.CommittedOffsets(ctx, e.sinkGroups()[sink], e.topic)
	require.NoError(e.t, err)
	return m
}

// committed is, per partition, the offset every sink has committed.
func (e *env) committed() map[int32]int64 {
	l, c := e.committedBy("local"), e.committedBy("cls")
	for p, v := range c {
		l[p] = min(l[p], v)
	}
	for p := range l {
		if _, ok := c[p]; !ok {
			l[p] = 0
		}
	}
	return l
}

// lag is the records not yet committed by every sink.
func (e *env) lag() int64 { return e.lagOf(e.committed()) }

// lagBy is the records sink's group has not committed.
func (e *env) lagBy(sink string) int64 { return e.lagOf(e.committedBy(sink)) }

func (e *env) lagOf(c map[int32]int64) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var lag int64
	for p, n := range e.perPart {
		lag += n - c[p]
	}
	return lag
}

// waitDrained waits until every produced record is committed.
func (e *env) waitDrained(timeout time.Duration) {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.lag() == 0 }, timeout, 100*time.Millisecond,
		"lag did not drain")
}

// checkStore asserts every produced event is in the store exactly once.
func (e *env) checkStore() {
	e.t.Helper()
	db, err := sql.Open("sqlite", "file:"+e.dbPath+"?mode=ro")
	require.NoError(e.t, err)
	defer db.Close()
	rows, err := db.Query(`SELECT cluster, audit_id, stage FROM events`)
	require.NoError(e.t, err)
	defer rows.Close()
	seen := map[key]int{}
	for rows.Next() {
		var k key
		require.NoError(e.t, rows.Scan(&k.cluster, &k.auditID, &k.stage))
		seen[k]++
	}
	require.NoError(e.t, rows.Err())
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, n := range seen {
		require.Equal(e.t, 1, n, "%v stored %d times", k, n)
		require.True(e.t, e.produced[k], "%v stored but never produced", k)
	}
	require.Len(e.t, seen, len(e.produced), "stored events")
}

// checkCLS asserts CLS saw every produced event of clusters at least once
// and that every delivery is of a produced event; it returns the number of
// duplicate deliveries.
func (e *env) checkCLS(clusters ...string) (dups int) {
	e.t.Helper()
	want := map[string]bool{}
	for _, c := range clusters {
		want[c] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, n := range e.received {
		// A duplicate is the same (cluster, auditID, stage) again, by
		// construction of this map: it can only share its key with an
		// original, and that original must have been produced.
		require.True(e.t, e.produced[k], "CLS got %v, which was never produced", k)
		dups += n - 1
	}
	missing := 0
	for k := range e.produced {
		if want[k.cluster] && e.received[k] == 0 {
			missing++
		}
	}
	require.Zero(e.t, missing, "events of %v never reached CLS", clusters)
	return dups
}

// lagMetric sums auditpipe_consumer_partition_lag_records over the
// partitions and sinks r reported.
func (r *replica) lagMetric(t *testing.T) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "auditpipe_consumer_partition_lag_records" {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
