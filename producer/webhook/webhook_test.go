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
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/schemas"
)

// harness is a receiver in front of a real broker, with a consumer that
// collects what reached the raw and dead-letter topics.
type harness struct {
	srv     *httptest.Server
	brokers []string
	topics  schemas.Topics
}

func newHarness(t *testing.T, brokers []string, cfg Config) *harness {
	t.Helper()
	cfg.Topics = uniqueTopics(t)
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx,
		kafka.TopicSpec{Name: cfg.Topics.Raw, Partitions: 4, ReplicationFactor: 1},
		kafka.TopicSpec{Name: cfg.Topics.DLQ, Partitions: 1, ReplicationFactor: 1}))
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	rc, err := New(cfg, prod, NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &harness{srv: srv, brokers: brokers, topics: cfg.Topics}
}

func uniqueTopics(t *testing.T) schemas.Topics {
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
