package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/app"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

func execRecord(tb testing.TB, cluster string, offset int64) kafka.Record {
	tb.Helper()
	ev, err := os.ReadFile("../../testdata/public-audit/falco/exec_pod.json")
	require.NoError(tb, err)
	return kafka.Record{Offset: offset, Value: ev, Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte(cluster)}}}
}

// TestDetectionsPerClusterAndReload: the registry's user rules file adds
// a rule, a cluster switches a shipped rule off, and a change of the rules
// file is picked up by a reload (a broken one is refused).
func TestDetectionsPerClusterAndReload(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "request.yaml"), requestPolicy)
	rules := filepath.Join(dir, "rules.yaml")
	writeFile(t, rules, `rules:
  - id: pod-subresource
    description: any pod subresource
    severity: info
    stages: [ResponseStarted]
    condition: objectRef.resource == "pods" && objectRef.subresource != ""
`)
	writeFile(t, filepath.Join(dir, "fleet.yaml"), `defaults:
  policy: request.yaml
  rules: rules.yaml
clusters:
  lab:
    detections:
      disable: [exec-into-pod]
`)
	cfg := config(t)
	cfg.PolicyFile = ""
	cfg.FleetFile = filepath.Join(dir, "fleet.yaml")
	prod := &recorder{}
	a, err := app.New(cfg, app.Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return prod, nil }})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, a.Close()) })

	detections := func(offset int64, cluster string) []string {
		t.Helper()
		prod.records = nil
		b := kafka.Batch{Topic: schemas.DefaultRawTopic, Records: []kafka.Record{execRecord(t, cluster, offset)}}
		require.NoError(t, a.Handler().Handle(t.Context(), b))
		var alerts []string
		var stored []string
		for _, r := range prod.records {
			switch r.Topic {
			case cfg.Topics.Alerts:
				var al schemas.Alert
				require.NoError(t, json.Unmarshal(r.Value, &al))
				alerts = append(alerts, al.Rule)
			case cfg.Topics.Events:
				var pe schemas.ProcessedEvent
				require.NoError(t, json.Unmarshal(r.Value, &pe))
				stored = pe.Pipeline.Detections
			}
		}
		require.Equal(t, stored, alerts, "one alert per stored detection")
		return stored
	}
	require.Equal(t, []string{"exec-into-pod", "pod-subresource"}, detections(1, "prod"))
	require.Equal(t, []string{"pod-subresource"}, detections(2, "lab"))

	writeFile(t, rules, "rules: []\n")
	require.NoError(t, a.ReloadPolicy())
	require.Equal(t, []string{"exec-into-pod"}, detections(3, "prod"))

	writeFile(t, rules, "rules:\n  - id: x\n    description: d\n    severity: low\n    condition: nosuch\n")
	require.ErrorContains(t, a.ReloadPolicy(), "rules.yaml:5: rule x: condition")
	require.Equal(t, []string{"exec-into-pod"}, detections(4, "prod"), "the previous rules stay")

	writeFile(t, filepath.Join(dir, "fleet.yaml"), "defaults:\n  policy: request.yaml\nclusters:\n  lab:\n    detections:\n      disable: [exec-into-pdo]\n")
	require.ErrorContains(t, a.ReloadPolicy(), "clusters.lab.detections: unknown rule ids exec-into-pdo")
}
