package alerts

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRecentAlertsAPI(t *testing.T) {
	am := newReceiver(t)
	cfg := DefaultConfig()
	cfg.Keep = 4
	h, _, _ := newHandler(t, cfg, &Alertmanager{URL: am.URL})
	a1 := alert("exec-into-pod", "prod-1", "jane", "a")
	a2 := alert("privileged-pod", "prod-2", "joe", "b")
	a2.Severity, a2.Time = "critical", a2.Time.Add(time.Minute)
	a3 := alert("nodeport-service", "prod-1", "jane", "c")
	a3.Severity, a3.Time = "low", a3.Time.Add(2*time.Minute)
	require.NoError(t, h.Handle(t.Context(), batchOf(t, a1, a2, a3, a1))) // the last one is a duplicate

	srv := httptest.NewServer(APIHandler(h.Recent()))
	t.Cleanup(srv.Close)
	get := func(query string) (AlertsResponse, int) {
		t.Helper()
		resp, err := http.Get(srv.URL + AlertsPath + "?" + query)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out AlertsResponse
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		}
		return out, resp.StatusCode
	}
	rules := func(r AlertsResponse) []string {
		var out []string
		for _, e := range r.Alerts {
			out = append(out, e.Rule+"/"+e.Outcome)
		}
		return out
	}
	all, _ := get("")
	require.Equal(t, 4, all.Total)
	require.Equal(t, []string{"exec-into-pod/duplicate", "nodeport-service/delivered", "privileged-pod/delivered", "exec-into-pod/delivered"}, rules(all))
	r, _ := get("cluster=prod-1&rule=exec-into-pod")
	require.Equal(t, []string{"exec-into-pod/duplicate", "exec-into-pod/delivered"}, rules(r))
	r, _ = get("severity=high")
	require.Equal(t, []string{"exec-into-pod/duplicate", "privileged-pod/delivered", "exec-into-pod/delivered"}, rules(r))
	r, _ = get("from=2026-01-02T03:05:00Z&to=2026-01-02T03:06:00Z")
	require.Equal(t, []string{"privileged-pod/delivered"}, rules(r))
	r, _ = get("limit=1")
	require.Equal(t, 4, r.Total)
	require.Len(t, r.Alerts, 1)
	for _, bad := range []string{"severity=urgent", "limit=0", "from=yesterday", "rules=x"} {
		_, code := get(bad)
		require.Equal(t, http.StatusBadRequest, code, bad)
	}

	// Only the last Keep entries stay.
	require.NoError(t, h.Handle(t.Context(), batchOf(t, alert("exec-into-pod", "prod-3", "x", "z"))))
	all, _ = get("")
	require.Equal(t, 4, all.Total)
	require.Equal(t, "prod-3", all.Alerts[0].Cluster)
}

func TestAlertsCommand(t *testing.T) {
	am := newReceiver(t)
	h, _, _ := newHandler(t, DefaultConfig(), &Alertmanager{URL: am.URL})
	a := alert("exec-into-pod", "prod-1", "jane", "web-0")
	b := alert("nodeport-service", "prod-2", "joe", "svc")
	b.Severity = "low"
	require.NoError(t, h.Handle(t.Context(), batchOf(t, a, b)))
	var seen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Get("Authorization") + " " + r.URL.Query().Encode()
		APIHandler(h.Recent()).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	var out, errOut strings.Builder
	require.NoError(t, RunCommand(t.Context(), []string{"--server", srv.URL, "--token", "s3cret", "--severity", "high"}, &out, &errOut))
	require.Equal(t, "Bearer s3cret limit=100&severity=high", seen)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, out.String())
	require.Regexp(t, `^2026-01-02T03:04:05Z\s+high\s+exec-into-pod\s+prod-1\s+jane\s+create\s+pods/exec web-0 in namespace default\s+delivered$`, lines[1])

	out.Reset()
	require.NoError(t, RunCommand(t.Context(), []string{"--server", srv.URL, "--limit", "1"}, &out, &errOut))
	require.Contains(t, out.String(), "(1 of 2; raise --limit for more)")
	require.Error(t, RunCommand(t.Context(), []string{"--server", srv.URL, "--severity", "urgent"}, &out, &errOut))
}

// TestAlertsCommandHelpAndErrors: help is an answer on stdout (nil error);
// an error is returned once, not printed as well.
func TestAlertsCommandHelpAndErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, RunCommand(t.Context(), []string{"--help"}, &out, &errOut))
	require.Contains(t, out.String(), "-server")
	require.Contains(t, out.String(), "AUDITPIPE_SERVER")
	require.Empty(t, errOut.String())

	out.Reset()
	err := RunCommand(t.Context(), []string{"--frob"}, &out, &errOut)
	require.ErrorContains(t, err, "frob")
	require.Empty(t, out.String())
	require.Empty(t, errOut.String())
}
