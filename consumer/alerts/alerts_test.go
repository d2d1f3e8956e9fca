package alerts

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// receiver is an HTTP server that records what it was sent and answers
// with the codes queued in fail (then 200).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	paths  []string
	fail   []int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want a JSON POST", http.StatusMethodNotAllowed)
			return
		}
		if len(r.fail) > 0 {
			code := r.fail[0]
			r.fail = r.fail[1:]
			http.Error(w, "injected", code)
			return
		}
		r.bodies = append(r.bodies, b)
		r.paths = append(r.paths, req.URL.Path)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() ([][]byte, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...), append([]string(nil), r.paths...)
}

// amAlerts decodes Alertmanager v2 PostableAlerts independently of the
// sender's types.
func amAlerts(t *testing.T, bodies [][]byte) []map[string]any {
	t.Helper()
	var all []map[string]any
	for _, b := range bodies {
		var list []map[string]any
		require.NoError(t, json.Unmarshal(b, &list), "%s", b)
		all = append(all, list...)
	}
	return all
}

func alert(rule, cluster, user, name string) schemas.Alert {
	return schemas.Alert{Rule: rule, Severity: "high", Technique: "T1609", Description: "d", Cluster: cluster,
		Principal: schemas.AlertPrincipal{Username: user, Type: "human"}, Verb: "create",
		Object:  &schemas.AlertObject{Resource: "pods", Subresource: "exec", Namespace: "default", Name: name},
		AuditID: "id-" + name, Stage: "ResponseStarted", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Event: schemas.Origin{Topic: "audit.raw", Partition: 1, Offset: 42}}
}

func batchOf(t *testing.T, alerts ...schemas.Alert) kafka.Batch {
	t.Helper()
	b := kafka.Batch{Topic: schemas.DefaultAlertsTopic}
	for i, a := range alerts {
		v, err := json.Marshal(a)
		require.NoError(t, err)
		b.Records = append(b.Records, kafka.Record{Offset: int64(i), Value: v})
	}
	return b
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newHandler(t *testing.T, cfg Config, rs ...Receiver) (*Handler, *Metrics, *clock) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewPedanticRegistry())
	require.NoError(t, err)
	c := &clock{t: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)}
	h, err := New(cfg, rs, m, nil, c.now)
	require.NoError(t, err)
	h.sleep = func(context.Context, time.Duration) error { return nil }
	return h, m, c
}

func TestDeliversToAlertmanagerAndWebhook(t *testing.T) {
	am, hook := newReceiver(t), newReceiver(t)
	h, m, _ := newHandler(t, DefaultConfig(), &Alertmanager{URL: am.URL + "/"}, &Webhook{URL: hook.URL + "/hooks/abc"})
	a := alert("exec-into-pod", "prod-1", "jane", "web-0")
	require.NoError(t, h.Handle(t.Context(), batchOf(t, a)))

	bodies, paths := am.got()
	require.Equal(t, []string{"/api/v2/alerts"}, paths)
	got := amAlerts(t, bodies)
	require.Len(t, got, 1)
	require.Equal(t, map[string]any{"alertname": "exec-into-pod", "severity": "high", "cluster": "prod-1", "principal": "jane",
		"technique": "T1609", "namespace": "default", "source": "auditpipe"}, got[0]["labels"])
	ann := got[0]["annotations"].(map[string]any)
	require.Equal(t, "id-web-0", ann["auditID"])
	require.Equal(t, "audit.raw/1/42", ann["event"])
	require.Equal(t, "2026-01-02T03:04:05Z", got[0]["startsAt"])
	require.Equal(t, "2026-01-02T04:04:05Z", got[0]["endsAt"])

	bodies, paths = hook.got()
	require.Equal(t, []string{"/hooks/abc"}, paths)
	var msg struct {
		Text  string        `json:"text"`
		Alert schemas.Alert `json:"alert"`
	}
	require.NoError(t, json.Unmarshal(bodies[0], &msg))
	require.Contains(t, msg.Text, "[HIGH] exec-into-pod: jane create pods/exec web-0 in namespace default in cluster prod-1")
	require.Equal(t, a, msg.Alert)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "prod-1", OutcomeDelivered)))
}

func TestDedupWithinWindow(t *testing.T) {
	am := newReceiver(t)
	cfg := DefaultConfig()
	cfg.DedupWindow = 10 * time.Minute
	h, m, c := newHandler(t, cfg, &Alertmanager{URL: am.URL})
	a := alert("exec-into-pod", "prod-1", "jane", "web-0")
	other := alert("exec-into-pod", "prod-1", "jane", "web-1")
	require.NoError(t, h.Handle(t.Context(), batchOf(t, a, a, other)))
	c.t = c.t.Add(9 * time.Minute)
	require.NoError(t, h.Handle(t.Context(), batchOf(t, a)))
	c.t = c.t.Add(2 * time.Minute) // 11 minutes after the first
	require.NoError(t, h.Handle(t.Context(), batchOf(t, a)))
	bodies, _ := am.got()
	require.Len(t, amAlerts(t, bodies), 3, "web-0 twice (before and after the window) and web-1")
	require.Equal(t, 2.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "prod-1", OutcomeDuplicate)))
}

func TestRateLimitPerRule(t *testing.T) {
	am := newReceiver(t)
	cfg := DefaultConfig()
	cfg.RatePerRule = 2
	h, m, c := newHandler(t, cfg, &Alertmanager{URL: am.URL})
	var b []schemas.Alert
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		b = append(b, alert("exec-into-pod", "prod-1", "jane", n))
	}
	b = append(b, alert("privileged-pod", "prod-2", "joe", "x"))
	require.NoError(t, h.Handle(t.Context(), batchOf(t, b...)))
	require.Equal(t, 2.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "prod-1", OutcomeDelivered)))
	require.Equal(t, 3.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "prod-1", OutcomeRateLimited)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Alerts.WithLabelValues("privileged-pod", "prod-2", OutcomeDelivered)))
	// Two per minute: 30 seconds later one more token.
	c.t = c.t.Add(30 * time.Second)
	require.NoError(t, h.Handle(t.Context(), batchOf(t, alert("exec-into-pod", "prod-1", "jane", "f"), alert("exec-into-pod", "prod-1", "jane", "g"))))
	require.Equal(t, 3.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "prod-1", OutcomeDelivered)))
	require.Equal(t, 4.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "prod-1", OutcomeRateLimited)))
}

func TestRetriesThenGivesUpWithoutBlockingOthers(t *testing.T) {
	am, hook := newReceiver(t), newReceiver(t)
	am.fail = []int{503, 502} // transient twice, then accepted
	hook.fail = []int{400}    // refused: no retry
	h, m, _ := newHandler(t, DefaultConfig(), &Alertmanager{URL: am.URL}, &Webhook{URL: hook.URL})
	require.NoError(t, h.Handle(t.Context(), batchOf(t, alert("exec-into-pod", "c", "u", "n"))))
	bodies, _ := am.got()
	require.Len(t, amAlerts(t, bodies), 1)
	hb, _ := hook.got()
	require.Empty(t, hb)
	require.Equal(t, 2.0, testutil.ToFloat64(m.Attempts.WithLabelValues("alertmanager", "retry")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Attempts.WithLabelValues("alertmanager", "ok")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Attempts.WithLabelValues("webhook", "failed")))
	require.Equal(t, 0.0, testutil.ToFloat64(m.Attempts.WithLabelValues("webhook", "retry")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Alerts.WithLabelValues("exec-into-pod", "c", OutcomeFailed)))

	// A receiver that stays down: MaxAttempts tries, then the batch is done.
	am.fail = []int{503, 503, 503, 503, 503, 503}
	require.NoError(t, h.Handle(t.Context(), batchOf(t, alert("exec-into-pod", "c", "u", "other"))))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Attempts.WithLabelValues("alertmanager", "failed")))
	require.Equal(t, 6.0, testutil.ToFloat64(m.Attempts.WithLabelValues("alertmanager", "retry")))
}

func TestInvalidRecordsAreCounted(t *testing.T) {
	am := newReceiver(t)
	h, m, _ := newHandler(t, DefaultConfig(), &Alertmanager{URL: am.URL})
	b := kafka.Batch{Records: []kafka.Record{{Value: []byte("not json"), Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte("c")}}}}}
	require.NoError(t, h.Handle(t.Context(), b))
	require.Equal(t, 1.0, testutil.ToFloat64(m.Alerts.WithLabelValues("", "c", OutcomeInvalid)))
	bodies, _ := am.got()
	require.Empty(t, bodies)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	for _, c := range []Config{{MaxAttempts: 0}, {MaxAttempts: 1, DedupWindow: -1}, {MaxAttempts: 1, RatePerRule: -1}, {MaxAttempts: 1, Backoff: 2, MaxBackoff: 1}} {
		require.Error(t, c.Validate())
	}
	_, err := New(DefaultConfig(), nil, nil, nil, nil)
	require.Error(t, err)
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	m.Alerts.WithLabelValues("r", "c", OutcomeDelivered).Inc()
	m.Attempts.WithLabelValues("webhook", "ok").Inc()
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}
