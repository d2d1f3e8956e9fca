package pipeline_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// detectingPipeline runs the shipped rules under an inline policy.
func detectingPipeline(t *testing.T, policyYAML string, topics schemas.Topics) (*pipeline.Pipeline, *recorder, *pipeline.DetectionMetrics) {
	t.Helper()
	pol, err := policy.Load("test-policy", []byte(policyYAML))
	require.NoError(t, err)
	rules, err := detect.LoadDefault("")
	require.NoError(t, err)
	rec := &recorder{}
	m, err := pipeline.NewDetectionMetrics(prometheus.NewPedanticRegistry())
	require.NoError(t, err)
	p, err := pipeline.New(pipeline.Config{Topics: topics}, pol, rec, nil, nil,
		pipeline.WithClock(func() time.Time { return clock }), pipeline.WithDetectionMetrics(m))
	require.NoError(t, err)
	require.NoError(t, p.SetFleet(pipeline.Fleet{Default: pol, Detections: &detect.Fleet{Default: rules}}))
	return p, rec, m
}

const metadataPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Metadata
`

const dropAllPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
`

func TestDetectionsBeforeThePolicyLowersTheLevel(t *testing.T) {
	p, rec, m := detectingPipeline(t, metadataPolicy, schemas.DefaultTopics())
	raw2nd := fixture(t, "create_nginx_pod_privileged_2nd_container.json")
	require.NoError(t, p.Handle(t.Context(), batch(raw(7, raw2nd), raw(8, fixture(t, "create_nginx_pod_unprivileged.json")))))

	var events []schemas.ProcessedEvent
	var alertRecs []schemas.Alert
	for _, r := range rec.records() {
		switch r.Topic {
		case schemas.DefaultEventsTopic:
			events = append(events, decodeOut(t, r))
		case schemas.DefaultAlertsTopic:
			require.Equal(t, "cls-1", string(r.Key))
			require.Equal(t, "cls-1", string(r.HeaderValue(schemas.HeaderCluster)))
			var a schemas.Alert
			require.NoError(t, json.Unmarshal(r.Value, &a))
			alertRecs = append(alertRecs, a)
		default:
			t.Fatalf("record on %s", r.Topic)
		}
	}
	require.Len(t, events, 2)
	// The stored event lost its bodies to the policy, yet the rule saw
	// the privileged second container in them.
	require.Equal(t, policy.LevelMetadata, events[0].Level)
	require.Nil(t, events[0].RequestObject)
	require.Equal(t, []string{"privileged-pod"}, events[0].Pipeline.Detections)
	require.Nil(t, events[1].Pipeline.Detections)
	require.NotContains(t, string(rec.records()[2].Value), "detections", "no key when nothing matched")

	// The alert, field by field, from the fixture's own values.
	var src map[string]any
	require.NoError(t, json.Unmarshal(raw2nd, &src))
	require.Len(t, alertRecs, 1)
	a := alertRecs[0]
	require.Equal(t, schemas.Alert{
		Rule: "privileged-pod", Severity: "critical", Technique: "T1611", Description: a.Description,
		Cluster: "cls-1",
		Principal: schemas.AlertPrincipal{Username: "system:serviceaccount:kube-system:replicaset-controller",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			Type:   "serviceaccount", Namespace: "kube-system", Name: "replicaset-controller"},
		Verb:       "create",
		Object:     &schemas.AlertObject{Resource: "pods", Namespace: "default", Name: src["responseObject"].(map[string]any)["metadata"].(map[string]any)["name"].(string)},
		RequestURI: src["requestURI"].(string),
		AuditID:    src["auditID"].(string),
		Stage:      "ResponseComplete",
		Time:       mustTime(t, src["stageTimestamp"].(string)),
		SourceIP:   str(src["sourceIPs"].([]any)[0]),
		UserAgent:  str(src["userAgent"]),
		Code:       201,
		DetectedAt: clock,
		Event:      schemas.Origin{Topic: schemas.DefaultRawTopic, Partition: 3, Offset: 7},
	}, a)
	require.NotEmpty(t, a.Description)
	require.Equal(t, 1.0, testutil.ToFloat64(m.Matches.WithLabelValues("privileged-pod")))
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	return ts.UTC()
}

func TestAlertsOfDroppedEvents(t *testing.T) {
	p, rec, _ := detectingPipeline(t, dropAllPolicy, schemas.DefaultTopics())
	require.NoError(t, p.Handle(t.Context(), batch(raw(1, fixture(t, "exec_pod.json")))))
	out := rec.records()
	require.Len(t, out, 1, "the event is dropped, its alert is not")
	require.Equal(t, schemas.DefaultAlertsTopic, out[0].Topic)
	var a schemas.Alert
	require.NoError(t, json.Unmarshal(out[0].Value, &a))
	require.Equal(t, "exec-into-pod", a.Rule)
	require.Equal(t, schemas.Origin{Topic: schemas.DefaultRawTopic, Partition: 3, Offset: 1}, a.Event)
}

func TestNoAlertsTopicKeepsDetectionsOnEvents(t *testing.T) {
	topics := schemas.DefaultTopics()
	topics.Alerts = ""
	p, rec, _ := detectingPipeline(t, metadataPolicy, topics)
	require.NoError(t, p.Handle(t.Context(), batch(raw(1, fixture(t, "attach_cluster_admin_role.json")))))
	out := rec.records()
	require.Len(t, out, 1)
	require.Equal(t, []string{"cluster-admin-binding"}, decodeOut(t, out[0]).Pipeline.Detections)
}

func TestNoRulesNoDetections(t *testing.T) {
	h := newHarness(t, "tke-default.yaml", pipeline.Config{})
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, fixture(t, "create_nginx_pod_privileged.json")))))
	out := h.prod.records()
	require.Len(t, out, 1)
	require.Nil(t, decodeOut(t, out[0]).Pipeline.Detections)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func TestDetectionMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := pipeline.NewDetectionMetrics(reg)
	require.NoError(t, err)
	m.Matches.WithLabelValues("privileged-pod").Inc()
	m.Errors.WithLabelValues("privileged-pod").Inc()
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	_, err = pipeline.NewDetectionMetrics(reg)
	var already prometheus.AlreadyRegisteredError
	require.ErrorAs(t, err, &already, "registering twice is a wiring bug")
}

func TestMalformedBodyCountsARuleError(t *testing.T) {
	p, rec, m := detectingPipeline(t, metadataPolicy, schemas.DefaultTopics())
	// Valid JSON overall but the body is cut: encoding/json rejects the
	// event, so build one whose body is valid JSON of the wrong shape for
	// the lazy scanner instead: a pod spec that is a string.
	ev := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x1","stage":"ResponseComplete",
"verb":"create","requestURI":"/api/v1/namespaces/default/pods","user":{"username":"jane"},
"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"code":201},
"requestObject":{"kind":"Pod","spec":"not a spec"}}`)
	require.NoError(t, p.Handle(t.Context(), batch(raw(1, ev))))
	out := rec.records()
	require.Len(t, out, 1, "the event goes on; no alert")
	require.Nil(t, decodeOut(t, out[0]).Pipeline.Detections)
	require.Equal(t, 0.0, testutil.ToFloat64(m.Errors.WithLabelValues("privileged-pod")), "a wrong shape is no match, not an error")
}

// TestLargeBatchKeepsRecordOrder: a batch large enough to be processed on
// several goroutines writes the same records in the same order (each
// record's alerts, then its event; DLQ records in place; dropped ones
// absent) as the same records handled one batch each.
func TestLargeBatchKeepsRecordOrder(t *testing.T) {
	topics := schemas.DefaultTopics()
	topics.Alerts = schemas.DefaultAlertsTopic
	values := [][]byte{
		fixture(t, "create_nginx_pod_privileged_2nd_container.json"), // alerts
		fixture(t, "create_secret.json"),
		[]byte(`{"not":"an event"}`), // DLQ
		fixture(t, "create_nginx_pod_unprivileged.json"),
	}
	var records []kafka.Record
	for i := range 300 {
		records = append(records, raw(int64(i), values[i%len(values)]))
	}
	// Metadata keeps every event; None drops every event (alerts and
	// DLQ records are still written).
	for _, pol := range []string{metadataPolicy, dropAllPolicy} {
		big, bigRec, _ := detectingPipeline(t, pol, topics)
		require.NoError(t, big.Handle(t.Context(), batch(records...)))
		one, oneRec, _ := detectingPipeline(t, pol, topics)
		for _, r := range records {
			require.NoError(t, one.Handle(t.Context(), batch(r)))
		}
		want, got := oneRec.records(), bigRec.records()
		require.NotEmpty(t, want)
		require.Len(t, got, len(want))
		for i := range want {
			require.Equal(t, want[i].Topic, got[i].Topic, "record %d", i)
			require.Equal(t, string(want[i].Value), string(got[i].Value), "record %d", i)
			require.Equal(t, want[i].Headers, got[i].Headers, "record %d", i)
		}
	}
}
