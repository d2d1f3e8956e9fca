package webhook

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/producer/event"
	"github.com/auditpipe/auditpipe/producer/spool"
	"github.com/auditpipe/auditpipe/schemas"
)

// harness is a receiver in front of a real broker, with a consumer that
// collects what reached the raw and dead-letter topics.
type harness struct {
	srv     *httptest.Server
	brokers []string
	topics  schemas.Topics
	reg     *prometheus.Registry
}

func newHarness(t *testing.T, brokers []string, cfg Config) *harness {
	t.Helper()
	cfg.Topics = uniqueTopics(t)
	ensureTopics(t, brokers, cfg.Topics)
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	reg := prometheus.NewRegistry()
	rc, err := New(cfg, prod, mustMetrics(t, reg), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &harness{srv: srv, brokers: brokers, topics: cfg.Topics, reg: reg}
}

func ensureTopics(t testing.TB, brokers []string, topics schemas.Topics) {
	t.Helper()
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx,
		kafka.TopicSpec{Name: topics.Raw, Partitions: 4, ReplicationFactor: 1},
		kafka.TopicSpec{Name: topics.DLQ, Partitions: 1, ReplicationFactor: 1}))
}

func uniqueTopics(t testing.TB) schemas.Topics {
	n := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + "." + time.Now().Format("150405.000000000")
	return schemas.Topics{Raw: "raw." + n, Events: "events." + n, DLQ: "dlq." + n}
}

// collect reads topic from the beginning until it holds n records.
func collect(t *testing.T, brokers []string, topic string, n int) []kafka.Record {
	t.Helper()
	g, err := kafkago.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "collect." + topic, Topics: []string{topic}})
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	var got []kafka.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, b.Records...)
		if len(got) >= n {
			cancel()
		}
		return nil
	}))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, n, "records on %s", topic)
	return got
}

// TestApiserverWebhookBackend drives the receiver with kube-apiserver's own
// webhook backend, in batch and blocking mode, and checks that every event
// lands on the raw topic once per send, keyed by auditID, with the
// cluster headers.
func TestApiserverWebhookBackend(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:120]
	for _, mode := range []audittest.Mode{audittest.ModeBatch, audittest.ModeBlocking} {
		t.Run(string(mode), func(t *testing.T) {
			h := newHarness(t, brokers, DefaultConfig())
			backend := audittest.WebhookBackend(t, h.srv.URL+PathPrefix+"prod-eu-1", mode)
			if mode == audittest.ModeBlocking {
				for i := 0; i < len(evs); i += 30 {
					require.True(t, backend.ProcessEvents(evs[i:i+30]...))
				}
			} else {
				require.True(t, backend.ProcessEvents(evs...))
			}
			backend.Shutdown()

			got := collect(t, h.brokers, h.topics.Raw, len(evs))
			want := map[string]int{}
			for _, e := range evs {
				want[string(e.AuditID)+"/"+string(e.Stage)]++
			}
			for _, r := range got {
				var ev schemas.Event
				require.NoError(t, json.Unmarshal(r.Value, &ev))
				require.Equal(t, ev.AuditID, string(r.Key), "records are keyed by auditID")
				require.Equal(t, "prod-eu-1", string(r.HeaderValue(schemas.HeaderCluster)))
				require.Equal(t, schemas.SourceWebhook, string(r.HeaderValue(schemas.HeaderSource)))
				require.Equal(t, "1", string(r.HeaderValue(schemas.HeaderSchemaVersion)))
				_, err := time.Parse(time.RFC3339Nano, string(r.HeaderValue(schemas.HeaderReceivedAt)))
				require.NoError(t, err)
				want[ev.AuditID+"/"+ev.Stage]--
			}
			for k, n := range want {
				require.Zero(t, n, "event %s", k)
			}
		})
	}
}

func post(t *testing.T, url string, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}

// TestItemsKeepTheirBytesAndBadItemsGoToTheDLQ checks that an event's
// bytes reach the raw topic exactly as sent (whitespace and field order
// included), gzip bodies are accepted, and an item that is not an audit
// event goes to the dead-letter topic without failing the batch.
func TestItemsKeepTheirBytesAndBadItemsGoToTheDLQ(t *testing.T) {
	h := newHarness(t, kafkatest.Brokers(t), DefaultConfig())
	event := `{ "stage":"ResponseComplete",  "auditID":"a-1","kind":"Event","verb":"get", "level":"Metadata" }`
	body := []byte(`{"items":[` + event + `, 42, {"kind":"Event","stage":"ResponseComplete"}]}`)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(body)
	require.NoError(t, zw.Close())

	code, msg := post(t, h.srv.URL+PathPrefix+"c1?timeout=30s", gz.Bytes(), http.Header{"Content-Encoding": {"gzip"}})
	require.Equal(t, http.StatusOK, code, msg)
	require.JSONEq(t, `{"accepted":1,"rejected":2}`, msg)

	raw := collect(t, h.brokers, h.topics.Raw, 1)
	require.Equal(t, event, string(raw[0].Value))
	dlq := collect(t, h.brokers, h.topics.DLQ, 2)
	reasons := []string{string(dlq[0].HeaderValue(schemas.HeaderDLQReason)), string(dlq[1].HeaderValue(schemas.HeaderDLQReason))}
	require.ElementsMatch(t, []string{"item 1: not a JSON object", "item 2: not an audit event: no auditID"}, reasons)
	require.Equal(t, "producer", string(dlq[0].HeaderValue(schemas.HeaderDLQStage)))
	require.Equal(t, "c1", string(dlq[0].HeaderValue(schemas.HeaderCluster)))
}

// TestLastEventTimestamp checks the series behind the "cluster went
// silent" alert: set per cluster when an event is accepted, not when a
// request only had items that went to the dead-letter topic.
func TestLastEventTimestamp(t *testing.T) {
	h := newHarness(t, kafkatest.Brokers(t), DefaultConfig())
	const name = "auditpipe_producer_last_event_timestamp_seconds"
	require.Equal(t, 0, testutil.CollectAndCount(h.reg, name))

	before := float64(time.Now().Unix())
	code, msg := post(t, h.srv.URL+PathPrefix+"c1", []byte(`{"items":[{"stage":"ResponseComplete","auditID":"a-1","kind":"Event"}]}`), nil)
	require.Equal(t, http.StatusOK, code, msg)
	code, msg = post(t, h.srv.URL+PathPrefix+"c2", []byte(`{"items":[42]}`), nil)
	require.Equal(t, http.StatusOK, code, msg)
	after := float64(time.Now().Unix() + 1)

	require.Equal(t, 1, testutil.CollectAndCount(h.reg, name), "only c1 had an accepted event")
	mfs, err := h.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		require.Equal(t, "c1", m.GetLabel()[0].GetValue())
		require.GreaterOrEqual(t, m.GetGauge().GetValue(), before)
		require.LessOrEqual(t, m.GetGauge().GetValue(), after)
	}
}

func TestBadRequestsGetClearErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 1024
	h := newHarness(t, kafkatest.Brokers(t), cfg)
	cases := []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"not json", "c1", `{"items": [}`, 400, "invalid JSON at byte"},
		{"not a list", "c1", `{"kind":"Event","auditID":"x"}`, 400, "kind is \\\"Event\\\""},
		{"items not an array", "c1", `{"items": {}}`, 400, "wrong type"},
		{"too large", "c1", `{"items":["` + strings.Repeat("x", 2000) + `"]}`, 413, "larger than the limit of 1024 bytes"},
		{"bad cluster id", "Not_Valid!", `{"items":[]}`, 404, "cluster id"},
	}
	for _, c := range cases {
		code, msg := post(t, h.srv.URL+PathPrefix+c.path, []byte(c.body), nil)
		require.Equal(t, c.code, code, "%s: %s", c.name, msg)
		require.Contains(t, msg, c.msg, c.name)
	}
}

// TestDeadBrokerGets503 checks that when Kafka cannot acknowledge a batch
// the apiserver is told to retry instead of being told the events are safe.
func TestDeadBrokerGets503(t *testing.T) {
	b, err := embedded.Start(embedded.Config{})
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.PublishTimeout = 3 * time.Second
	h := newHarness(t, b.Addrs(), cfg)
	b.Close()

	code, msg := post(t, h.srv.URL+PathPrefix+"c1", []byte(`{"items":[{"auditID":"a","stage":"ResponseComplete"}]}`), nil)
	require.Equal(t, http.StatusServiceUnavailable, code, msg)
	require.Contains(t, msg, "events were not stored")
}

func TestKubeconfig(t *testing.T) {
	kc, err := Kubeconfig("http://127.0.0.1:8090", "prod-eu-1")
	require.NoError(t, err)
	require.Contains(t, string(kc), "server: http://127.0.0.1:8090/v1/audit/prod-eu-1")
	_, err = Kubeconfig("http://127.0.0.1:8090", "Bad Cluster")
	require.Error(t, err)
	_, err = Kubeconfig("127.0.0.1:8090", "c1")
	require.Error(t, err)
}

// TestOversizedEvents checks the truncate-backend behaviour: an event
// over maxEventBytes loses its bodies and is annotated; one that is still
// too large goes to the dead-letter topic, cut to the limit, with the
// reason; the rest of the batch is unaffected.
func TestOversizedEvents(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxEventBytes = 2048
	h := newHarness(t, kafkatest.Brokers(t), cfg)
	big := strings.Repeat("x", 4000)
	bodies := `{"kind":"Event","auditID":"big-bodies","stage":"ResponseComplete","annotations":{"a":"b"},"requestObject":{"data":"` + big + `"},"responseObject":{"data":"` + big + `"}}`
	bigMeta := `{"kind":"Event","auditID":"big-meta","stage":"ResponseComplete","requestURI":"/` + big + `"}`
	small := `{"kind":"Event","auditID":"small","stage":"ResponseComplete"}`
	code, msg := post(t, h.srv.URL+PathPrefix+"c1", []byte(`{"items":[`+bodies+`,`+bigMeta+`,`+small+`]}`), nil)
	require.Equal(t, http.StatusOK, code, msg)
	require.JSONEq(t, `{"accepted":2,"rejected":1}`, msg)

	raw := collect(t, h.brokers, h.topics.Raw, 2)
	byID := map[string]schemas.Event{}
	for _, r := range raw {
		var ev schemas.Event
		require.NoError(t, json.Unmarshal(r.Value, &ev))
		byID[ev.AuditID] = ev
	}
	require.Equal(t, map[string]string{"a": "b", "audit.k8s.io/truncated": "true"}, byID["big-bodies"].Annotations)
	require.Nil(t, byID["big-bodies"].RequestObject)
	require.Nil(t, byID["big-bodies"].ResponseObject)
	require.Contains(t, byID, "small")

	dlq := collect(t, h.brokers, h.topics.DLQ, 1)
	require.Len(t, dlq[0].Value, 2048)
	reason := string(dlq[0].HeaderValue(schemas.HeaderDLQReason))
	require.Contains(t, reason, "item 1: event exceeds maxEventBytes 2048 even without requestObject and responseObject")
	require.Contains(t, reason, "(item of 4081 bytes cut to its first 2048)")
}

// gate is a Producer that holds every call until released, to keep
// requests in flight.
type gate struct {
	kafka.Producer
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Produce(ctx context.Context, r ...kafka.Record) error {
	g.entered <- struct{}{}
	<-g.release
	return g.Producer.Produce(ctx, r...)
}

// TestConcurrencyCap checks that requests beyond maxConcurrent are
// answered 503 with Retry-After at once, and the ones in flight finish.
func TestConcurrencyCap(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	g := &gate{Producer: prod, entered: make(chan struct{}, 2), release: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.MaxConcurrent = 2
	cfg.Topics = uniqueTopics(t)
	ensureTopics(t, brokers, cfg.Topics)
	rc, err := New(cfg, g, mustMetrics(t, prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	body := []byte(`{"items":[{"auditID":"a","stage":"ResponseComplete"}]}`)
	codes := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Post(srv.URL+PathPrefix+"c1", "application/json", bytes.NewReader(body))
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	<-g.entered
	<-g.entered
	req, err := http.NewRequest(http.MethodPost, srv.URL+PathPrefix+"c1", bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(msg))
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Contains(t, string(msg), "more than 2 requests in progress")
	close(g.release)
	require.Equal(t, http.StatusOK, <-codes)
	require.Equal(t, http.StatusOK, <-codes)
}

func TestTruncatedGzipAndGarbage(t *testing.T) {
	h := newHarness(t, kafkatest.Brokers(t), DefaultConfig())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"items":[{"auditID":"a","stage":"ResponseComplete"}]}`))
	require.NoError(t, zw.Close())
	cut := gz.Bytes()[:gz.Len()-6]
	code, msg := post(t, h.srv.URL+PathPrefix+"c1", cut, http.Header{"Content-Encoding": {"gzip"}})
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "read body")
	code, msg = post(t, h.srv.URL+PathPrefix+"c1", []byte("\x00\x01garbage"), http.Header{"Content-Encoding": {"gzip"}})
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "gzip body")
	code, msg = post(t, h.srv.URL+PathPrefix+"c1", []byte("\x00\x01garbage"), nil)
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "invalid JSON at byte 1")
}

// FuzzRecords checks the splitter on arbitrary items: it never panics,
// every item becomes exactly one record, raw records carry the item's
// bytes unchanged (unless truncated, which annotates them) and are keyed
// by their auditID, and no record exceeds maxEventBytes.
func FuzzRecords(f *testing.F) {
	f.Add([]byte(`{"items":[{"auditID":"a","stage":"ResponseComplete"},42,"x",null,{"kind":"Pod"}]}`))
	f.Add([]byte(`{"items":[{"auditID":"a","stage":"s","requestObject":{"x":"` + strings.Repeat("y", 1100) + `"}}]}`))
	cfg := DefaultConfig()
	cfg.MaxEventBytes = 1024
	rc, err := New(cfg, nil, mustMetrics(f, prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, body []byte) {
		var list eventList
		if json.Unmarshal(body, &list) != nil {
			return
		}
		recs, rejected, _ := rc.records("c1", list.Items, time.Now())
		require.Len(t, recs, len(list.Items))
		dlq := 0
		for i, r := range recs {
			require.LessOrEqual(t, len(r.Value), cfg.MaxEventBytes)
			if r.Topic == cfg.Topics.DLQ {
				dlq++
				require.NotEmpty(t, r.HeaderValue(schemas.HeaderDLQReason))
				continue
			}
			var id event.Identity
			require.NoError(t, json.Unmarshal(r.Value, &id))
			require.Equal(t, id.AuditID, string(r.Key))
			if len(list.Items[i]) <= cfg.MaxEventBytes {
				require.Equal(t, []byte(list.Items[i]), r.Value)
			}
		}
		require.Equal(t, rejected, dlq)
	})
}

// TestFullSpoolGets503 puts the receiver in front of the spool with Kafka
// down and a spool too small for a second batch: the first batch is
// acknowledged from the spool, the second gets 503 with Retry-After and
// the reason, so the apiserver retries.
func TestFullSpoolGets503(t *testing.T) {
	b, err := embedded.Start(embedded.Config{})
	require.NoError(t, err)
	brokers := b.Addrs()
	b.Close()
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), MaxBytes: 600, SegmentBytes: 600}, nil)
	require.NoError(t, err)
	dcfg := spool.DefaultDurableConfig()
	dcfg.KafkaTimeout = 300 * time.Millisecond
	d, err := spool.NewDurable(dcfg, prod, sp, nil, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	cfg := DefaultConfig()
	reg := prometheus.NewRegistry()
	rc, err := New(cfg, d, mustMetrics(t, reg), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	body := []byte(`{"items":[{"auditID":"a","stage":"ResponseComplete","pad":"` + strings.Repeat("p", 300) + `"}]}`)
	code, msg := post(t, srv.URL+PathPrefix+"c1", body, nil)
	require.Equal(t, http.StatusOK, code, msg)
	req, err := http.NewRequest(http.MethodPost, srv.URL+PathPrefix+"c1", bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(out))
	require.Equal(t, "5", resp.Header.Get("Retry-After"))
	require.Contains(t, string(out), "spool is full")
	require.Equal(t, 1.0, testutil.ToFloat64(rc.metrics.rejected.WithLabelValues("spool_full")))
}

// mustMetrics is NewMetrics for a test: registering fails it.
func mustMetrics(tb testing.TB, reg prometheus.Registerer) *Metrics {
	tb.Helper()
	m, err := NewMetrics(reg)
	require.NoError(tb, err)
	return m
}
