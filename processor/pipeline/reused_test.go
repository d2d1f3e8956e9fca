package pipeline_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
)

// shippedRule reads a rule's metadata straight from the shipped rules
// file, not through the detect package.
func shippedRule(t *testing.T, id string) map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "detect", "rules", "default.yaml"))
	require.NoError(t, err)
	var doc struct {
		Rules []map[string]any `yaml:"rules"`
	}
	require.NoError(t, yaml.Unmarshal(data, &doc))
	for _, r := range doc.Rules {
		if r["id"] == id {
			return r
		}
	}
	t.Fatalf("no rule %s in the shipped file", id)
	return nil
}

// storedPrivilegedPod is a processed event as the store holds it: a
// privileged pod create (which the processor already alerted on), whose
// auditID the store found reused.
func storedPrivilegedPod(t *testing.T, cluster string) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "public-audit", "falco", "create_nginx_pod_privileged.json"))
	require.NoError(t, err)
	var pe schemas.ProcessedEvent
	require.NoError(t, json.Unmarshal(raw, &pe.Event))
	pe.Pipeline = schemas.Pipeline{Cluster: cluster, Source: schemas.SourceWebhook, Detections: []string{"privileged-pod"},
		Origin: schemas.Origin{Topic: "audit.raw", Partition: 1, Offset: 42}}
	b, err := json.Marshal(pe)
	require.NoError(t, err)
	return b
}

func TestReusedAuditIDAlerts(t *testing.T) {
	rules, err := detect.LoadDefault("")
	require.NoError(t, err)
	off, err := rules.WithOverrides(nil, []string{"auditid-reused"})
	require.NoError(t, err)
	fleet := &detect.Fleet{Default: rules, Clusters: map[string]*detect.Set{"quiet": off}}
	now := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)

	recs, err := pipeline.ReusedAuditIDAlerts(fleet, "audit.alerts", storedPrivilegedPod(t, "prod"), now)
	require.NoError(t, err)
	require.Len(t, recs, 1, "only the rule on the marker: privileged-pod was raised by the processor")
	require.Equal(t, "audit.alerts", recs[0].Topic)
	require.Equal(t, "prod", string(recs[0].Key))
	var a schemas.Alert
	require.NoError(t, json.Unmarshal(recs[0].Value, &a))
	want := shippedRule(t, "auditid-reused")
	require.Equal(t, "auditid-reused", a.Rule)
	require.Equal(t, want["severity"], a.Severity)
	require.Equal(t, want["description"], a.Description)
	require.Equal(t, want["technique"] == nil, a.Technique == "")
	require.Equal(t, "prod", a.Cluster)
	require.Equal(t, "a362d22b-db3c-4590-9505-23782f12925f", a.AuditID)
	require.Equal(t, "create", a.Verb)
	require.Equal(t, now, a.DetectedAt)
	require.Equal(t, schemas.Origin{Topic: "audit.raw", Partition: 1, Offset: 42}, a.Event)

	// A cluster that switched the rule off gets no alert.
	recs, err = pipeline.ReusedAuditIDAlerts(fleet, "audit.alerts", storedPrivilegedPod(t, "quiet"), now)
	require.NoError(t, err)
	require.Empty(t, recs)
	// No rules, no alerts.
	recs, err = pipeline.ReusedAuditIDAlerts(nil, "audit.alerts", storedPrivilegedPod(t, "prod"), now)
	require.NoError(t, err)
	require.Empty(t, recs)
}
