package schemas

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEventDecodesPublicFixtures checks that Event reads real apiserver
// events (v1 and v1beta1, from public repositories) and keeps the fields
// the pipeline relies on.
func TestEventDecodesPublicFixtures(t *testing.T) {
	files, err := filepath.Glob("../testdata/public-audit/stackdriver-webhook-bridge/k8s_audit_events/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var ev Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if ev.AuditID == "" || ev.Stage == "" || ev.Verb == "" || ev.User.Username == "" || ev.StageTimestamp.IsZero() {
			t.Errorf("%s: missing identity fields: %+v", f, ev)
		}
	}
}

func TestProcessedEventKeepsPipelineUnderOneKey(t *testing.T) {
	pe := ProcessedEvent{Event: Event{AuditID: "a", Stage: "ResponseComplete"}, Pipeline: Pipeline{Cluster: "c1", SchemaVersion: SchemaVersion}}
	b, err := json.Marshal(pe)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	var p Pipeline
	if err := json.Unmarshal(top[PipelineKey], &p); err != nil || p.Cluster != "c1" {
		t.Fatalf("pipeline fields not under %q: %s", PipelineKey, b)
	}
	if _, ok := top["cluster"]; ok {
		t.Fatalf("pipeline field leaked to top level: %s", b)
	}
}

func TestTopicsValidate(t *testing.T) {
	if err := DefaultTopics().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Topics{Raw: "a", Events: "a", DLQ: "b"}).Validate(); err == nil {
		t.Fatal("clashing topics accepted")
	}
	if err := (Topics{Raw: "a", Events: "b"}).Validate(); err == nil {
		t.Fatal("empty dlq topic accepted")
	}
}

func TestTopicsAlertsIsOptionalButDistinct(t *testing.T) {
	if DefaultTopics().Alerts != "audit.alerts" {
		t.Fatalf("default alerts topic %q", DefaultTopics().Alerts)
	}
	if err := (Topics{Raw: "a", Events: "b", DLQ: "c"}).Validate(); err != nil {
		t.Fatalf("no alerts topic is valid: %v", err)
	}
	if err := (Topics{Raw: "a", Events: "b", DLQ: "c", Alerts: "b"}).Validate(); err == nil || !strings.Contains(err.Error(), "topics.alerts") {
		t.Fatalf("alerts = events topic: %v", err)
	}
}
