package helm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID        string `json:"refId"`
			Expr         string `json:"expr"`
			URL          string `json:"url"`
			RootSelector string `json:"root_selector"`
			URLOptions   struct {
				Params []struct {
					Key   string `json:"key"`
					Value string `json:"value"`
				} `json:"params"`
			} `json:"url_options"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "dashboards", "*.json"))
	if err != nil || len(files) != 2 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// grafanaVars replaces the dashboards' variables with values PromQL can
// parse, as Grafana does before it sends a query.
var grafanaVars = strings.NewReplacer("$namespace", "audit", "${datasource}", "x", "$__rate_interval", "5m")

// TestPipelineDashboard parses every PromQL query of the pipeline health
// dashboard and checks that the metrics it reads exist.
func TestPipelineDashboard(t *testing.T) {
	d := loadDashboards(t)["pipeline-health.json"]
	known := codeMetrics(t)
	p := parser.NewParser(parser.Options{})
	var queries int
	ids := map[int]bool{}
	for _, panel := range d.Panels {
		if ids[panel.ID] {
			t.Errorf("panel id %d twice", panel.ID)
		}
		ids[panel.ID] = true
		if panel.Datasource.UID != "${datasource}" || panel.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want the dashboard's variable", panel.Title, panel.Datasource)
		}
		for _, target := range panel.Targets {
			queries++
			expr, err := p.ParseExpr(grafanaVars.Replace(target.Expr))
			if err != nil {
				t.Errorf("panel %q %s: %v\n%s", panel.Title, target.RefID, err, target.Expr)
				continue
			}
			checkMetricsExist(t, fmt.Sprintf("panel %q", panel.Title), expr, known)
			if !strings.Contains(target.Expr, `namespace=~"$namespace"`) {
				t.Errorf("panel %q %s ignores the namespace variable", panel.Title, target.RefID)
			}
		}
	}
	if queries < 15 {
		t.Errorf("%d queries: the dashboard lost panels", queries)
	}
	for _, want := range []string{"auditpipe_producer_events_total", "auditpipe_consumer_partition_lag_records", "auditpipe_producer_spool_bytes",
		"auditpipe_processor_records_total", "auditpipe_clssink_sends_total", "auditpipe_producer_batch_duration_seconds_bucket"} {
		found := false
		for _, panel := range d.Panels {
			for _, target := range panel.Targets {
				found = found || strings.Contains(target.Expr, want)
			}
		}
		if !found {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestAuditDashboard parses every search API query of the audit overview
// dashboard with the consumer's own CQL parser, SQL part included.
func TestAuditDashboard(t *testing.T) {
	d := loadDashboards(t)["audit-overview.json"]
	if len(d.Panels) == 0 {
		t.Fatal("no panels")
	}
	for _, panel := range d.Panels {
		if panel.Datasource.Type != "yesoreyeram-infinity-datasource" {
			t.Errorf("panel %q: datasource %s", panel.Title, panel.Datasource.Type)
		}
		for _, target := range panel.Targets {
			if target.URL != "/api/v1/search" || !strings.Contains(target.RootSelector, "rows") {
				t.Errorf("panel %q: url %q root_selector %q", panel.Title, target.URL, target.RootSelector)
			}
			params := map[string]string{}
			for _, p := range target.URLOptions.Params {
				params[p.Key] = p.Value
			}
			if params["from"] != "${__from}" || params["to"] != "${__to}" {
				t.Errorf("panel %q does not follow the time picker: %v", panel.Title, params)
			}
			q, err := cql.Parse(params["q"])
			if err != nil {
				t.Errorf("panel %q: query does not parse: %v\n%s", panel.Title, err, params["q"])
				continue
			}
			if q.SQL == nil {
				t.Errorf("panel %q: no | SELECT: the panel needs rows", panel.Title)
			}
		}
	}
}
