package cls_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

const (
	secretID  = "AKIDsink"
	secretKey = "sinkkey"
)

var topics = map[string]string{"alpha": "topic-alpha", "beta": "topic-beta", "gone": "topic-gone"}

func route(c string) (string, bool) { t, ok := topics[c]; return t, ok }

// setup returns the local server (knowing topic-alpha and topic-beta
// only) and a sink pointed at it with short retry timings.
func setup(t testing.TB, compression string) (*clslocal.Server, *cls.Sink, *prometheus.Registry) {
	t.Helper()
	srv := clslocal.New(clslocal.Options{
		Credentials: []clslocal.Credential{{SecretID: secretID, SecretKey: secretKey}},
		Topics:      []string{"topic-alpha", "topic-beta"},
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	reg := prometheus.NewRegistry()
	s, err := cls.New(cls.Config{
		Endpoint: hs.URL, SecretID: secretID, SecretKey: secretKey, Compression: compression,
		RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, BlockedRetry: 200 * time.Millisecond,
	}, route, reg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close(5*time.Second)) })
	return srv, s, reg
}

func records(cluster string, n, size int) []kafka.Record {
	ts := time.Date(2026, 11, 27, 10, 0, 0, 123e6, time.UTC)
	out := make([]kafka.Record, n)
	for i := range out {
		out[i] = kafka.Record{Topic: "audit.events", Offset: int64(i),
			Value: eventgen.Event(cluster, fmt.Sprintf("%s-%05d", cluster, i), size, ts)}
	}
	return out
}

func TestWriteDeliversEveryRecordToItsClusterTopic(t *testing.T) {
	for _, compression := range []string{"lz4", "zstd", "deflate"} {
		t.Run(compression, func(t *testing.T) {
			srv, s, reg := setup(t, compression)
			recs := append(records("alpha", 300, 1400), records("beta", 200, 1400)...)
			require.NoError(t, s.Write(context.Background(), recs))
			require.Equal(t, int64(300), srv.LogCount("topic-alpha"))
			require.Equal(t, int64(200), srv.LogCount("topic-beta"))
			seen := map[string]bool{}
			for _, l := range srv.Logs() {
				id, _ := l.Get("auditID")
				cluster, _ := l.Get("auditpipe.cluster")
				require.Equal(t, topics[cluster], l.Topic)
				require.Equal(t, time.Date(2026, 11, 27, 10, 0, 0, 123e6, time.UTC).UnixMilli(), l.Time)
				res, _ := l.Get("objectRef.resource")
				require.Equal(t, "configmaps", res)
				seen[id] = true
			}
			require.Len(t, seen, 500)
			require.Equal(t, 500.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_logs_total", "sent")))
		})
	}
}

func TestWriteRidesOutTransientErrors(t *testing.T) {
	srv, s, _ := setup(t, "lz4")
	srv.FailNext("topic-alpha", clslocal.FaultUnavailable, clslocal.FaultSpeedQuota, clslocal.FaultInternal,
		clslocal.FaultSpeedQuota, clslocal.FaultUnavailable)
	require.NoError(t, s.Write(context.Background(), records("alpha", 100, 1400)))
	require.Equal(t, int64(100), srv.LogCount("topic-alpha"))
	require.GreaterOrEqual(t, srv.Stats().Rejected, int64(5))
}

func TestMissingTopicBlocksOnlyThatCluster(t *testing.T) {
	srv, s, reg := setup(t, "lz4")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	recs := append(records("gone", 10, 1400), records("alpha", 50, 1400)...)
	go func() { done <- s.Write(ctx, recs) }()
	require.Eventually(t, func() bool { return s.Blocked()["gone"] == "TopicNotExist" }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return srv.LogCount("topic-alpha") == 50 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_cluster_blocked", "gone")))
	select {
	case err := <-done:
		t.Fatalf("Write returned %v while a cluster's records were refused", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Creating the topic lets the held records through without a restart.
	srv.AddTopic("topic-gone")
	require.NoError(t, <-done)
	require.Equal(t, int64(10), srv.LogCount("topic-gone"))
	require.Equal(t, int64(50), srv.LogCount("topic-alpha"), "alpha was not sent twice")
	require.Empty(t, s.Blocked())
	cancel()

	// Revocation while blocked: Write gives up with the context's error.
	srv.FailAlways("topic-beta", clslocal.FaultUnauthorized)
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.Write(ctx, records("beta", 5, 1400))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, "Unauthorized", s.Blocked()["beta"])
}

func TestOversizedEventsAreTruncatedNotRefused(t *testing.T) {
	srv, s, reg := setup(t, "lz4")
	// 3 MB of requestObject: over CLS's 1 MB per value; with other big
	// events in the same group the 5 MB group limit is at stake too.
	recs := records("alpha", 4, 3<<20)
	require.NoError(t, s.Write(context.Background(), recs))
	require.Equal(t, int64(4), srv.LogCount("topic-alpha"))
	for _, l := range srv.Logs() {
		v, _ := l.Get("requestObject")
		require.LessOrEqual(t, len(v), 1<<20)
		require.Contains(t, v, "auditpipe-truncated: original")
	}
	require.Equal(t, 4.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_truncated_values_total", "")))
}

func TestInvalidAndUnroutedAreCountedNotSent(t *testing.T) {
	srv, s, reg := setup(t, "lz4")
	recs := append(records("nowhere", 3, 1000), kafka.Record{Value: []byte("not json")})
	recs = append(recs, kafka.Record{Value: []byte(`{"auditID":"x","stage":"y"}`)})
	require.NoError(t, s.Write(context.Background(), recs))
	require.Equal(t, int64(0), srv.LogCount(""))
	require.Equal(t, 3.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_logs_total", "unrouted")))
	require.Equal(t, 2.0, testutil.ToFloat64(metric(t, reg, "auditpipe_clssink_logs_total", "invalid")))
}

func TestMetricsLint(t *testing.T) {
	_, _, reg := setup(t, "lz4")
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestConfigValidate(t *testing.T) {
	ok := cls.Config{Endpoint: "x", SecretID: "a", SecretKey: "b"}.WithDefaults()
	require.NoError(t, ok.Validate())
	for name, mut := range map[string]func(*cls.Config){
		"endpoint":    func(c *cls.Config) { c.Endpoint = "" },
		"secretKey":   func(c *cls.Config) { c.SecretKey = "" },
		"compression": func(c *cls.Config) { c.Compression = "snappy" },
		"linger":      func(c *cls.Config) { c.Linger = time.Millisecond },
		"chunkLogs":   func(c *cls.Config) { c.ChunkLogs = 9000 },
		"chunkBytes":  func(c *cls.Config) { c.ChunkBytes = 8 << 20 },
	} {
		c := ok
		mut(&c)
		err := c.Validate()
		require.Error(t, err, name)
		require.True(t, strings.Contains(err.Error(), name), "%s: %v", name, err)
	}
}

// metric returns the collector of name (with the one label value, if
// any) from reg, for testutil.ToFloat64.
func metric(t testing.TB, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
					continue
				}
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "x", nil, nil), prometheus.UntypedValue, v)
			}
		}
	})
}

type collectorFunc func(ch chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
