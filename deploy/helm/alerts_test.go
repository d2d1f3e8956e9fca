package helm

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

// alertCase is synthetic series (promqltest's load syntax, 1m steps from
// t=0) and what the alert does at a time: fire for the given label
// values, or not fire at all (want nil).
type alertCase struct {
	name   string
	series string
	at     time.Duration
	want   []map[string]string
}

// alertCases has at least one firing and one quiet case per alert; a new
// alert in the chart without cases fails TestAlertRules.
var alertCases = map[string][]alertCase{
	"AuditpipeClusterSilent": {
		{"one cluster stopped", `
			auditpipe_producer_last_event_timestamp_seconds{namespace="audit",pod="p1",cluster="c1"} 0+60x40
			auditpipe_producer_last_event_timestamp_seconds{namespace="audit",pod="p1",cluster="c2"} 0+60x5 300+0x35`,
			30 * time.Minute, []map[string]string{{"cluster": "c2"}}},
		{"another replica still hears it", `
			auditpipe_producer_last_event_timestamp_seconds{namespace="audit",pod="p1",cluster="c2"} 0+60x5 300+0x35
			auditpipe_producer_last_event_timestamp_seconds{namespace="audit",pod="p2",cluster="c2"} 0+60x40`,
			30 * time.Minute, nil},
		{"the producer restarted and the series is gone for a while", `
			auditpipe_producer_last_event_timestamp_seconds{namespace="audit",pod="p1",cluster="c3"} 0+60x10 _x10
			auditpipe_producer_last_event_timestamp_seconds{namespace="audit",pod="p2",cluster="c3"} _x10 600+0x20`,
			30 * time.Minute, []map[string]string{{"cluster": "c3"}}},
	},
	"AuditpipeSpoolFilling": {
		{"90% full", `
			auditpipe_producer_spool_bytes{namespace="audit",pod="p1"} 900x20
			auditpipe_producer_spool_max_bytes{namespace="audit",pod="p1"} 1000x20`,
			15 * time.Minute, []map[string]string{{"pod": "p1"}}},
		{"10% full", `
			auditpipe_producer_spool_bytes{namespace="audit",pod="p1"} 100x20
			auditpipe_producer_spool_max_bytes{namespace="audit",pod="p1"} 1000x20`,
			15 * time.Minute, nil},
	},
	"AuditpipeSpoolFull": {
		{"rejections", `auditpipe_producer_spool_full_rejections_total{namespace="audit",pod="p1"} 0x10 1+1x10`,
			15 * time.Minute, []map[string]string{{"pod": "p1"}}},
		{"none", `auditpipe_producer_spool_full_rejections_total{namespace="audit",pod="p1"} 0x20`, 15 * time.Minute, nil},
	},
	"AuditpipeWebhookErrors": {
		{"9% 503", `
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="200"} 0+100x30
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="503"} 0+10x30`,
			25 * time.Minute, []map[string]string{{"namespace": "audit"}}},
		{"9% 429", `
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="200"} 0+100x30
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="429"} 0+10x30`,
			25 * time.Minute, []map[string]string{{"namespace": "audit"}}},
		{"1% 503", `
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="200"} 0+100x30
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="503"} 0+1x30`,
			25 * time.Minute, nil},
		{"400s are the caller's problem", `
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="200"} 0+100x30
			auditpipe_producer_webhook_requests_total{namespace="audit",pod="p1",code="400"} 0+50x30`,
			25 * time.Minute, nil},
	},
	"AuditpipeDLQGrowing": {
		{"processor dead letters", `
			auditpipe_processor_records_total{namespace="audit",job="t-auditpipe-processor-metrics",outcome="dlq"} 0x10 1+1x10
			auditpipe_processor_records_total{namespace="audit",job="t-auditpipe-processor-metrics",outcome="accepted"} 0+100x20`,
			15 * time.Minute, []map[string]string{{"job": "t-auditpipe-processor-metrics"}}},
		{"producer dead letters", `auditpipe_producer_events_total{namespace="audit",job="t-auditpipe-producer-metrics",cluster="c1",outcome="dlq"} 0x10 5+5x10`,
			15 * time.Minute, []map[string]string{{"job": "t-auditpipe-producer-metrics"}}},
		{"none", `
			auditpipe_processor_records_total{namespace="audit",job="t-auditpipe-processor-metrics",outcome="dlq"} 7x20
			auditpipe_processor_records_total{namespace="audit",job="t-auditpipe-processor-metrics",outcome="accepted"} 0+100x20`,
			15 * time.Minute, nil},
	},
	"AuditpipeConsumerLagGrowing": {
		{"growing", `
			auditpipe_consumer_partition_lag_records{namespace="audit",sink="cls",topic="audit.events",partition="0"} 0+5000x50
			auditpipe_consumer_partition_lag_records{namespace="audit",sink="cls",topic="audit.events",partition="1"} 0+5000x50`,
			45 * time.Minute, []map[string]string{{"sink": "cls"}}},
		{"high but shrinking", `auditpipe_consumer_partition_lag_records{namespace="audit",sink="cls",topic="audit.events",partition="0"} 500000-1000x50`,
			45 * time.Minute, nil},
		{"growing but small", `auditpipe_consumer_partition_lag_records{namespace="audit",sink="local",topic="audit.events",partition="0"} 0+100x50`,
			45 * time.Minute, nil},
	},
	"AuditpipeCLSRejections": {
		{"blocked", `
			auditpipe_clssink_cluster_blocked{namespace="audit",pod="c-0",cluster="c1"} 0x5 1x20
			auditpipe_clssink_cluster_blocked{namespace="audit",pod="c-0",cluster="c2"} 0x25`,
			20 * time.Minute, []map[string]string{{"cluster": "c1"}}},
		{"a blip", `auditpipe_clssink_cluster_blocked{namespace="audit",pod="c-0",cluster="c1"} 0x5 1x2 0x20`, 20 * time.Minute, nil},
	},
	"AuditpipeCLSUnrouted": {
		{"unrouted", `auditpipe_clssink_logs_total{namespace="audit",pod="c-0",outcome="unrouted"} 0x10 3+3x10`, 15 * time.Minute, []map[string]string{{"namespace": "audit"}}},
		{"routed", `
			auditpipe_clssink_logs_total{namespace="audit",pod="c-0",outcome="unrouted"} 0x20
			auditpipe_clssink_logs_total{namespace="audit",pod="c-0",outcome="sent"} 0+9x20`, 15 * time.Minute, nil},
	},
	"AuditpipePolicyReloadRefused": {
		{"refused", `
			auditpipe_processor_policy_reloads_total{namespace="audit",pod="p-1",result="refused"} 0x10 1x10
			auditpipe_processor_policy_reloads_total{namespace="audit",pod="p-1",result="applied"} 2x20`,
			15 * time.Minute, []map[string]string{{"pod": "p-1"}}},
		{"applied", `
			auditpipe_processor_policy_reloads_total{namespace="audit",pod="p-1",result="refused"} 0x20
			auditpipe_processor_policy_reloads_total{namespace="audit",pod="p-1",result="applied"} 0x10 1x10`,
			15 * time.Minute, nil},
	},
	"AuditpipeDetectionErrors": {
		{"errors", `auditpipe_processor_detection_errors_total{namespace="audit",pod="p-1",rule="exec-into-pod"} 0x10 4+1x10`,
			15 * time.Minute, []map[string]string{{"rule": "exec-into-pod"}}},
		{"none", `auditpipe_processor_detection_errors_total{namespace="audit",pod="p-1",rule="exec-into-pod"} 2x20`, 15 * time.Minute, nil},
	},
	"AuditpipeRedactionFailures": {
		{"bodies replaced whole", `
			auditpipe_processor_redaction_failures_total{namespace="audit",pod="p-1"} 0x10 1+1x10
			auditpipe_processor_redaction_failures_total{namespace="audit",pod="p-2"} 0x20`,
			15 * time.Minute, []map[string]string{{"namespace": "audit"}}},
		{"an old failure", `auditpipe_processor_redaction_failures_total{namespace="audit",pod="p-1"} 0x2 3x40`, 30 * time.Minute, nil},
	},
	"AuditpipeTargetDown": {
		{"down", `
			up{namespace="audit",service="t-auditpipe-processor-metrics",pod="p-1"} 1x5 0x20
			up{namespace="audit",service="t-auditpipe-consumer-metrics",pod="c-0"} 1x25`,
			20 * time.Minute, []map[string]string{{"pod": "p-1"}}},
		{"another release's", `up{namespace="audit",service="other-auditpipe-processor-metrics",pod="p-1"} 0x25`, 20 * time.Minute, nil},
	},
}

func renderedRules(t *testing.T) []monitoringv1.Rule {
	t.Helper()
	r := decodeAll(t, render(t, "strimzi"))
	pr := find(t, r, func(*monitoringv1.PrometheusRule) bool { return true })
	var out []monitoringv1.Rule
	for _, g := range pr.Spec.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("the PrometheusRule has no rules")
	}
	return out
}

// TestAlertRules evaluates every rendered alert the way Prometheus does,
// step by step over synthetic series, so that `for:` is honoured.
func TestAlertRules(t *testing.T) {
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	p := parser.NewParser(parser.Options{})
	for _, rule := range renderedRules(t) {
		cases := alertCases[rule.Alert]
		if len(cases) == 0 {
			t.Errorf("alert %s has no test cases", rule.Alert)
			continue
		}
		if !slices.ContainsFunc(cases, func(c alertCase) bool { return c.want != nil }) || !slices.ContainsFunc(cases, func(c alertCase) bool { return c.want == nil }) {
			t.Errorf("alert %s needs a firing and a quiet case", rule.Alert)
		}
		expr, err := p.ParseExpr(rule.Expr.String())
		if err != nil {
			t.Errorf("alert %s: %v", rule.Alert, err)
			continue
		}
		var hold time.Duration
		if rule.For != nil {
			d, err := model.ParseDuration(string(*rule.For))
			if err != nil {
				t.Fatalf("alert %s: for: %v", rule.Alert, err)
			}
			hold = time.Duration(d)
		}
		for _, c := range cases {
			t.Run(rule.Alert+"/"+c.name, func(t *testing.T) {
				storage := promqltest.LoadedStorage(t, loadCommand(c.series))
				ar := rules.NewAlertingRule(rule.Alert, expr, hold, 0, labels.FromMap(rule.Labels), labels.FromMap(rule.Annotations),
					labels.EmptyLabels(), "", true, slog.New(slog.DiscardHandler))
				query := rules.EngineQueryFunc(engine, storage)
				for ts := time.Duration(0); ts <= c.at; ts += 30 * time.Second {
					if _, err := ar.Eval(context.Background(), 0, time.Unix(0, 0).Add(ts), query, nil, 0); err != nil {
						t.Fatalf("eval at %s: %v", ts, err)
					}
				}
				var got []map[string]string
				for _, a := range ar.ActiveAlerts() {
					if a.State != rules.StateFiring {
						continue
					}
					got = append(got, a.Labels.Map())
					for k, v := range a.Annotations.Map() {
						if strings.Contains(v, "error") && strings.Contains(v, "template") {
							t.Errorf("annotation %s does not expand: %s", k, v)
						}
						if strings.Contains(v, "{{") {
							t.Errorf("annotation %s left a template: %s", k, v)
						}
					}
				}
				if len(got) != len(c.want) {
					t.Fatalf("at %s: %d firing %v, want %v", c.at, len(got), got, c.want)
				}
				sort.Slice(got, func(i, j int) bool { return labels.FromMap(got[i]).String() < labels.FromMap(got[j]).String() })
				for i, want := range c.want {
					for k, v := range want {
						if got[i][k] != v {
							t.Errorf("alert %d: %s=%q, want %q (%v)", i, k, got[i][k], v, got[i])
						}
					}
					if got[i]["severity"] == "" {
						t.Errorf("alert without severity: %v", got[i])
					}
				}
			})
		}
	}
	for name := range alertCases {
		if !slices.ContainsFunc(renderedRules(t), func(r monitoringv1.Rule) bool { return r.Alert == name }) {
			t.Errorf("test cases for %s, which the chart does not have", name)
		}
	}
}

// TestRunbooks: every alert links to a section of RUNBOOK.md that exists.
func TestRunbooks(t *testing.T) {
	runbook, err := os.ReadFile(filepath.Join(chartDir(t), "RUNBOOK.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			anchors[githubAnchor(h)] = true
		}
	}
	for _, rule := range renderedRules(t) {
		url := rule.Annotations["runbook_url"]
		_, anchor, ok := strings.Cut(url, "#")
		if !ok || !strings.HasPrefix(url, "https://github.com/auditpipe/auditpipe/blob/main/deploy/helm/auditpipe/RUNBOOK.md#") {
			t.Errorf("alert %s: runbook_url %q", rule.Alert, url)
			continue
		}
		if !anchors[anchor] {
			t.Errorf("alert %s: RUNBOOK.md has no section #%s", rule.Alert, anchor)
		}
		if rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
			t.Errorf("alert %s: summary or description missing", rule.Alert)
		}
	}
}

// loadCommand is promqltest's load command for series, one per line,
// each indented as the syntax wants.
func loadCommand(series string) string {
	var b strings.Builder
	b.WriteString("load 1m\n")
	for _, line := range strings.Split(series, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

var nonAnchor = regexp.MustCompile(`[^a-z0-9 _-]`)

// githubAnchor is how GitHub names a heading's anchor.
func githubAnchor(heading string) string {
	return strings.ReplaceAll(nonAnchor.ReplaceAllString(strings.ToLower(strings.TrimSpace(heading)), ""), " ", "-")
}

// metricNames lists the metric names an expression selects.
func metricNames(t *testing.T, expr parser.Expr) []string {
	t.Helper()
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			names = append(names, vs.Name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel {
				if m.Type == labels.MatchEqual {
					names = append(names, m.Value)
				} else {
					names = append(names, strings.Split(m.Value, "|")...)
				}
			}
		}
		return nil
	})
	return names
}

var (
	metricDecl  = regexp.MustCompile(`"(auditpipe_[a-z0-9_]+)"`)
	histoSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)
)

// codeMetrics is every auditpipe_* metric name in the stages' Go code.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, mod := range []string{"producer", "processor", "consumer", "internal"} {
		err := filepath.WalkDir(filepath.Join(repoRoot(t), mod), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range metricDecl.FindAllStringSubmatch(string(b), -1) {
				out[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// contractMetrics come from CONTRACT.md and are added by the stage
// binaries' shared CLI (issue #15), not yet on main.
var contractMetrics = map[string]bool{"auditpipe_build_info": true}

func checkMetricsExist(t *testing.T, where string, expr parser.Expr, known map[string]bool) {
	t.Helper()
	for _, n := range metricNames(t, expr) {
		base := histoSuffix.ReplaceAllString(n, "")
		if n == "up" || known[n] || known[base] || contractMetrics[n] {
			continue
		}
		t.Errorf("%s: metric %s is not defined by any stage", where, n)
	}
}

func TestAlertMetricsExist(t *testing.T) {
	known := codeMetrics(t)
	if !known["auditpipe_producer_last_event_timestamp_seconds"] || !known["auditpipe_processor_records_total"] {
		t.Fatalf("the scan of the Go code found too little: %d names", len(known))
	}
	p := parser.NewParser(parser.Options{})
	for _, rule := range renderedRules(t) {
		expr, err := p.ParseExpr(rule.Expr.String())
		if err != nil {
			t.Fatalf("%s: %v", rule.Alert, err)
		}
		checkMetricsExist(t, rule.Alert, expr, known)
	}
}
