package allinone

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/processor/detect"
)

// TestReusedAuditIDRaisesAlert: the store, not the processor, finds that
// a client reused an Audit-ID; the shipped auditid-reused rule must still
// reach Alertmanager through audit.alerts, with the rule's metadata from
// the rules file, while a plain retransmission raises nothing.
func TestReusedAuditIDRaisesAlert(t *testing.T) {
	am := &alertmanager{}
	srv := httptest.NewServer(am)
	t.Cleanup(srv.Close)
	cfg := testConfig(t)
	cfg.Alerts.Alertmanager = srv.URL
	p := startPipeline(t, cfg)
	const cluster = "reuse-alert-1"
	hook := p.WebhookURL() + "/v1/audit/" + cluster

	// The rule as the shipped file states it (read as plain YAML).
	var shipped struct {
		Rules []map[string]any `yaml:"rules"`
	}
	require.NoError(t, yaml.Unmarshal(detect.DefaultRules(), &shipped))
	var rule map[string]any
	for _, r := range shipped.Rules {
		if r["id"] == "auditid-reused" {
			rule = r
		}
	}
	require.NotNil(t, rule)

	reusedAlerts := func() []map[string]any {
		var out []map[string]any
		for _, a := range am.received() {
			if a["labels"].(map[string]any)["alertname"] == "auditid-reused" {
				out = append(out, a)
			}
		}
		return out
	}

	harmless := keptFixture(t)
	malicious := harmless.DeepCopy()
	malicious.Verb = "delete"
	malicious.ObjectRef = &auditinternal.ObjectReference{Resource: "clusterrolebindings", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1", Name: "cluster-admin"}
	malicious.RequestURI = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin"

	// The event, then a retransmission of it: a duplicate, no reuse.
	backend := audittest.WebhookBackend(t, hook, audittest.ModeBlocking)
	require.True(t, backend.ProcessEvents(harmless))
	require.Equal(t, 1, waitForEvents(t, p.APIURL(), cluster, 1).Total)
	require.True(t, backend.ProcessEvents(harmless))
	waitForMetric(t, p.APIURL(), `auditpipe_localstore_events_total{outcome="duplicate"}`, 1)

	// A different event under the same auditID: stored, marked, alerted.
	require.True(t, backend.ProcessEvents(malicious))
	waitForMetric(t, p.APIURL(), `auditpipe_localstore_auditid_reused_total`, 1)
	deadline := time.Now().Add(time.Minute)
	for len(reusedAlerts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// A redelivery of the reused event is a duplicate: no second alert.
	require.True(t, backend.ProcessEvents(malicious))
	waitForMetric(t, p.APIURL(), `auditpipe_localstore_events_total{outcome="duplicate"}`, 2)
	time.Sleep(time.Second) // give a wrong extra alert a moment to show up

	got := reusedAlerts()
	require.Len(t, got, 1, "one alert, for the reused auditID; none for the retransmissions")
	labels := got[0]["labels"].(map[string]any)
	ann := got[0]["annotations"].(map[string]any)
	require.Equal(t, cluster, labels["cluster"])
	require.Equal(t, rule["severity"], labels["severity"])
	require.Equal(t, string(harmless.AuditID), ann["auditID"])
	require.Equal(t, rule["description"], ann["description"])
	require.Equal(t, "delete", ann["verb"], "the alert is of the reusing event")
	require.Contains(t, ann, "event")
}
