package allinone

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/consumer/alerts"
	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/stretchr/testify/require"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
)

// alertmanager is an Alertmanager-compatible receiver: it accepts what
// Alertmanager's v2 API accepts (POST /api/v2/alerts, a JSON array of
// alerts with labels including alertname, startsAt before endsAt) and
// answers 400 to anything else, as Alertmanager does.
type alertmanager struct {
	mu     sync.Mutex
	alerts []map[string]any
}

func (am *alertmanager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
		http.NotFound(w, r)
		return
	}
	var list []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &list); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var raw []map[string]any
	_ = json.Unmarshal(b, &raw)
	for i, a := range list {
		if a.Labels["alertname"] == "" || a.StartsAt.IsZero() || !a.EndsAt.After(a.StartsAt) {
			http.Error(w, "invalid alert", http.StatusBadRequest)
			return
		}
		am.mu.Lock()
		am.alerts = append(am.alerts, raw[i])
		am.mu.Unlock()
	}
	w.WriteHeader(http.StatusOK)
}

func (am *alertmanager) received() []map[string]any {
	am.mu.Lock()
	defer am.mu.Unlock()
	return append([]map[string]any(nil), am.alerts...)
}

// TestAlertsEndToEnd posts Falco's traces and audit2rbac's benign log
// through kube-apiserver's own webhook backend and checks that exactly the
// attacks reach an Alertmanager-compatible receiver through audit.alerts,
// and that the stored events carry their detections, searchable by rule.
func TestAlertsEndToEnd(t *testing.T) {
	am := &alertmanager{}
	srv := httptest.NewServer(am)
	t.Cleanup(srv.Close)
	cfg := testConfig(t)
	cfg.Alerts.Alertmanager = srv.URL
	p := startPipeline(t, cfg)
	const cluster = "alerts-1"

	// What should fire, from the trace file names (see processor/detect's
	// tests for every rule): one alert per attack.
	attacks := map[string]string{
		"falco/create_nginx_pod_privileged_2nd_container.json": "privileged-pod",
		"falco/exec_pod.json":                     "exec-into-pod",
		"falco/attach_cluster_admin_role.json":    "cluster-admin-binding",
		"falco/create_nginx_pod_hostnetwork.json": "host-namespace-pod",
	}
	benign := []string{"falco/create_nginx_pod_unprivileged.json", "falco/create_configmap.json", "audit2rbac/demo.v1.jsonl"}
	var evs []*auditinternal.Event
	want := map[string]string{} // auditID -> rule
	for _, f := range audittest.Load(t, audittest.Dir(t)) {
		name := filepath.ToSlash(f.File)
		if f.Event == nil {
			continue
		}
		if rule, ok := attacks[name]; ok {
			evs = append(evs, f.Event)
			want[string(f.Event.AuditID)] = rule
		}
		for _, b := range benign {
			if name == b {
				evs = append(evs, f.Event)
			}
		}
	}
	require.Len(t, want, len(attacks))
	require.Greater(t, len(evs), 30)
	audittest.Shift(evs, time.Now().Add(-time.Minute))

	backend := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/"+cluster, audittest.ModeBatch)
	require.True(t, backend.ProcessEvents(evs...))
	backend.Shutdown()

	deadline := time.Now().Add(2 * time.Minute)
	for len(am.received()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// Give a wrong extra alert a moment to show up.
	time.Sleep(time.Second)
	got := map[string]string{}
	for _, a := range am.received() {
		labels := a["labels"].(map[string]any)
		ann := a["annotations"].(map[string]any)
		require.Equal(t, cluster, labels["cluster"])
		require.True(t, strings.HasPrefix(ann["event"].(string), cfg.Topics.Raw+"/"), ann["event"])
		got[ann["auditID"].(string)] = labels["alertname"].(string)
	}
	require.Equal(t, want, got)

	// The stored events carry the same detections, searchable by rule.
	for id, rule := range want {
		var ids []string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			res := searchAPI(t, p.APIURL(), url.Values{"cluster": {cluster}, "q": {"auditpipe.detections:" + rule}}).Events
			ids = ids[:0]
			for _, e := range res {
				require.Contains(t, e.Pipeline.Detections, rule)
				ids = append(ids, e.AuditID)
			}
			if len(ids) > 0 || time.Now().After(deadline) {
				break
			}
		}
		sort.Strings(ids)
		require.Equal(t, []string{id}, slices.Compact(ids), rule)
	}

	// GET /api/v1/alerts lists what was delivered.
	var out strings.Builder
	require.NoError(t, alerts.RunCommand(t.Context(), []string{"--server", p.APIURL(), "--cluster", cluster, "--json"}, &out, io.Discard))
	var listed alerts.AlertsResponse
	require.NoError(t, json.Unmarshal([]byte(out.String()), &listed))
	require.Equal(t, len(want), listed.Total)
	for _, e := range listed.Alerts {
		require.Equal(t, want[e.AuditID], e.Rule)
		require.Equal(t, alerts.OutcomeDelivered, e.Outcome)
	}
}
