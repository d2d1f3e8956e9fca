package group_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// faulty puts a fault in front of a real sink: the first failures writes
// fail with err (wrapped with group.Permanent when permanent).
type faulty struct {
	group.Sink
	failures  int32
	permanent bool
	calls     atomic.Int32
}

func (f *faulty) Write(ctx context.Context, records []kafka.Record) error {
	if f.calls.Add(1) <= f.failures {
		err := errors.New("disk I/O error")
		if f.permanent {
			return group.Permanent(err)
		}
		return err
	}
	return f.Sink.Write(ctx, records)
}

// handlerEnv opens a store and returns it with 10 events of one cluster.
func handlerEnv(t *testing.T) (*store, []kafka.Record) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	recs := make([]kafka.Record, 10)
	for i := range recs {
		recs[i] = kafka.Record{Topic: "audit.events", Offset: int64(i),
			Value: eventgen.Event("c1", "id-"+string(rune('a'+i)), 800, time.Now())}
	}
	return &store{Store: s, path: path}, recs
}

type store struct {
	*local.Store
	path string
}

// count reads the number of stored events from the file itself.
func count(t *testing.T, s *store) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+s.path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var n int64
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM events`).Scan(&n))
	return n
}

// TestTransientErrorRetried: a sink failing with a transient error is
// retried inside Handle (the member does not leave the group: Handle
// returns nil) until the batch is durable.
func TestTransientErrorRetried(t *testing.T) {
	store, recs := handlerEnv(t)
	reg := prometheus.NewRegistry()
	f := &faulty{Sink: group.NewLocalSink(store.Store, slog.New(slog.DiscardHandler)), failures: 3}
	h := group.NewSinkHandler(f, newMetrics(t, reg), slog.New(slog.DiscardHandler), group.Retry{Base: time.Millisecond, Max: 5 * time.Millisecond})
	require.NoError(t, h.Handle(context.Background(), kafka.Batch{Topic: "audit.events", Records: recs}))
	require.Equal(t, int32(4), f.calls.Load())
	require.Equal(t, int64(len(recs)), count(t, store))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP auditpipe_consumer_records_total Records handed to a sink, by sink and outcome (accepted: durable in the sink; skipped: permanently refused, logged, committed; failed: a write attempt failed and is retried; revoked: not committed, will be delivered again).
# TYPE auditpipe_consumer_records_total counter
auditpipe_consumer_records_total{outcome="accepted",sink="local"} 10
auditpipe_consumer_records_total{outcome="failed",sink="local"} 30
`), "auditpipe_consumer_records_total"))
}

// TestPermanentErrorSkipped: a permanent error skips the batch (counted),
// and the partition goes on with the next one.
func TestPermanentErrorSkipped(t *testing.T) {
	store, recs := handlerEnv(t)
	reg := prometheus.NewRegistry()
	f := &faulty{Sink: group.NewLocalSink(store.Store, slog.New(slog.DiscardHandler)), failures: 1, permanent: true}
	h := group.NewSinkHandler(f, newMetrics(t, reg), slog.New(slog.DiscardHandler), group.Retry{Base: time.Hour})
	require.NoError(t, h.Handle(context.Background(), kafka.Batch{Topic: "audit.events", Records: recs[:4]}))
	require.NoError(t, h.Handle(context.Background(), kafka.Batch{Topic: "audit.events", Records: recs[4:]}))
	require.Equal(t, int64(len(recs)-4), count(t, store), "only the second batch is stored")
	require.Equal(t, 4.0, testutil.ToFloat64(counter(t, reg, "skipped")))
}

// TestRetryStopsOnRevoke: a partition revoked while its sink keeps failing
// returns nil promptly (nothing committed) instead of an error that would
// make the member leave the group.
func TestRetryStopsOnRevoke(t *testing.T) {
	store, recs := handlerEnv(t)
	reg := prometheus.NewRegistry()
	f := &faulty{Sink: group.NewLocalSink(store.Store, slog.New(slog.DiscardHandler)), failures: 1 << 30}
	h := group.NewSinkHandler(f, newMetrics(t, reg), slog.New(slog.DiscardHandler), group.Retry{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.NoError(t, h.Handle(ctx, kafka.Batch{Topic: "audit.events", Records: recs}))
	require.Greater(t, f.calls.Load(), int32(2), "it retried")
	require.Zero(t, count(t, store))
	require.Equal(t, float64(len(recs)), testutil.ToFloat64(counter(t, reg, "revoked")))
}

func counter(t *testing.T, reg *prometheus.Registry, outcome string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
	for _, mf := range mfs {
		if mf.GetName() != "auditpipe_consumer_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					c.Add(m.GetCounter().GetValue())
				}
			}
		}
	}
	return c
}

func newMetrics(t *testing.T, reg prometheus.Registerer) *group.Metrics {
	t.Helper()
	m, err := group.NewMetrics(reg)
	require.NoError(t, err)
	return m
}
