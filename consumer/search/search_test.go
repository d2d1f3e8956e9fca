package search_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// newServer serves the search API over a real store holding every fixture.
func newServer(tb testing.TB) (*httptest.Server, []localtest.Event) {
	tb.Helper()
	store, err := local.Open(filepath.Join(tb.TempDir(), "events.db"), local.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, store.Close()) })
	events := localtest.All(tb)
	_, err = store.Write(context.Background(), localtest.Values(events))
	require.NoError(tb, err)
	srv := httptest.NewServer(search.NewHandler(store, nil))
	tb.Cleanup(srv.Close)
	return srv, events
}

func get(tb testing.TB, srv *httptest.Server, params url.Values) (int, []byte) {
	tb.Helper()
	resp, err := http.Get(srv.URL + search.EventsPath + "?" + params.Encode())
	require.NoError(tb, err)
	defer resp.Body.Close()
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	require.NoError(tb, err)
	require.Equal(tb, "application/json", resp.Header.Get("Content-Type"))
	return resp.StatusCode, body.Bytes()
}

func getEvents(tb testing.TB, srv *httptest.Server, params url.Values) search.EventsResponse {
	tb.Helper()
	code, body := get(tb, srv, params)
	require.Equal(tb, http.StatusOK, code, string(body))
	var res search.EventsResponse
	require.NoError(tb, json.Unmarshal(body, &res))
	return res
}

func decode(tb testing.TB, raw json.RawMessage) schemas.ProcessedEvent {
	tb.Helper()
	var ev schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(raw, &ev))
	return ev
}

func TestHandlerFilters(t *testing.T) {
	srv, events := newServer(t)
	count := func(match func(localtest.Event) bool) int {
		n := 0
		for _, e := range events {
			if match(e) {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name   string
		params url.Values
		want   int
	}{
		{"all", url.Values{}, len(events)},
		{"cluster", url.Values{"cluster": {localtest.ClusterGKE}},
			count(func(e localtest.Event) bool { return e.Pipeline.Cluster == localtest.ClusterGKE })},
		{"verb", url.Values{"verb": {"delete"}},
			count(func(e localtest.Event) bool { return e.Verb == "delete" })},
		{"user", url.Values{"user": {"mark.stemm@sysdig.com"}},
			count(func(e localtest.Event) bool { return e.User.Username == "mark.stemm@sysdig.com" })},
		{"resource and namespace", url.Values{"resource": {"pods"}, "namespace": {"default"}},
			count(func(e localtest.Event) bool {
				return e.ObjectRef != nil && e.ObjectRef.Resource == "pods" && e.ObjectRef.Namespace == "default"
			})},
		{"full text", url.Values{"q": {"evil-user-binding"}}, 1},
		{"time range, RFC 3339 and unix ms", url.Values{
			"from": {"2020-01-09T00:18:50.683Z"},
			"to":   {strconv.FormatInt(time.Date(2020, 1, 10, 22, 24, 5, 196_000_000, time.UTC).UnixMilli(), 10)},
		}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Positive(t, tc.want)
			res := getEvents(t, srv, tc.params)
			require.Equal(t, tc.want, res.Total)
			require.Len(t, res.Events, min(tc.want, local.DefaultLimit))
		})
	}
}

func TestHandlerLimitAndOrder(t *testing.T) {
	srv, events := newServer(t)
	res := getEvents(t, srv, url.Values{"limit": {"3"}})
	require.Equal(t, len(events), res.Total)
	require.Len(t, res.Events, 3)
	var prev time.Time
	for i, raw := range res.Events {
		ts := decode(t, raw).StageTimestamp
		if i > 0 {
			require.False(t, ts.After(prev), "newest first")
		}
		prev = ts
	}

	res = getEvents(t, srv, url.Values{"cluster": {"no-such-cluster"}})
	require.Zero(t, res.Total)
	require.NotNil(t, res.Events, `"events":[] rather than null`)
}

func TestHandlerBadParameters(t *testing.T) {
	srv, _ := newServer(t)
	tests := []struct {
		params url.Values
		param  string
	}{
		{url.Values{"from": {"yesterday"}}, "from"},
		{url.Values{"to": {"2024-13-01T00:00:00Z"}}, "to"},
		{url.Values{"from": {"-5"}}, "from"},
		{url.Values{"from": {"2024-05-02T00:00:00Z"}, "to": {"2024-05-01T00:00:00Z"}}, "to"},
		{url.Values{"limit": {"ten"}}, "limit"},
		{url.Values{"limit": {"0"}}, "limit"},
		{url.Values{"limit": {"10001"}}, "limit"},
		{url.Values{"users": {"bob"}}, "users"},
		{url.Values{"verb": {"get", "list"}}, "verb"},
	}
	for _, tc := range tests {
		t.Run(tc.params.Encode(), func(t *testing.T) {
			code, body := get(t, srv, tc.params)
			require.Equal(t, http.StatusBadRequest, code)
			var e search.ErrorResponse
			require.NoError(t, json.Unmarshal(body, &e))
			require.Equal(t, tc.param, e.Parameter)
			require.Contains(t, e.Error, tc.param)
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	srv, _ := newServer(t)
	for _, method := range []string{http.MethodPost, http.MethodDelete, http.MethodPut} {
		req, err := http.NewRequest(method, srv.URL+search.EventsPath, strings.NewReader("{}"))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, method)
		require.Equal(t, http.MethodGet, resp.Header.Get("Allow"))
	}
	resp, err := http.Get(srv.URL + "/api/v1/other")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

type failingQuerier struct{}

func (failingQuerier) Search(context.Context, local.SearchRequest) (local.SearchResult, error) {
	return local.SearchResult{}, errors.New("disk on fire: /var/lib/auditpipe/events.db")
}

func (failingQuerier) Query(context.Context, local.Query) (local.QueryResult, error) {
	return local.QueryResult{}, errors.New("disk I/O error at /secret/path")
}

func TestHandlerStoreErrorIs500WithoutDetails(t *testing.T) {
	srv := httptest.NewServer(search.NewHandler(failingQuerier{}, nil))
	defer srv.Close()
	code, body := get(t, srv, url.Values{})
	require.Equal(t, http.StatusInternalServerError, code)
	require.NotContains(t, string(body), "/secret/path")
}

func runCLI(tb testing.TB, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err = search.RunEventsCommand(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestCLIJSONLines(t *testing.T) {
	srv, _ := newServer(t)
	stdout, _, err := runCLI(t, "--server", srv.URL, "--output", "json", "--verb", "delete", "--limit", "5")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 5)
	for _, l := range lines {
		ev := decode(t, json.RawMessage(l))
		require.Equal(t, "delete", ev.Verb)
	}
}

func TestCLITable(t *testing.T) {
	srv, _ := newServer(t)
	stdout, stderr, err := runCLI(t, "--server", srv.URL+"/", "--q", "evil-user-binding",
		"--from", "2020-01-01T00:00:00Z", "--to", "1893456000000")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 2, stdout)
	require.Equal(t, []string{"TIME", "CLUSTER", "USER", "VERB", "RESOURCE", "NAMESPACE/NAME", "CODE"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"2020-01-07T00:40:20.502Z", localtest.ClusterGKE, "mark.stemm@sysdig.com",
		"create", "clusterrolebindings", "evil-user-binding", "201"}, strings.Fields(lines[1]))
	require.Equal(t, "1 of 1 matching events\n", stderr)

	// Namespaced objects and subresources.
	stdout, _, err = runCLI(t, "--server", srv.URL, "--cluster", localtest.ClusterGKE, "--q", "exec")
	require.NoError(t, err)
	require.Contains(t, stdout, "pods/exec")
	require.Contains(t, stdout, "default/")
}

func TestCLIRelativeTime(t *testing.T) {
	srv, _ := newServer(t)
	// The fixtures are years old: nothing in the last hour, all in 100 000h.
	_, stderr, err := runCLI(t, "--server", srv.URL, "--from", "1h")
	require.NoError(t, err)
	require.Equal(t, "0 of 0 matching events\n", stderr)
	_, stderr, err = runCLI(t, "--server", srv.URL, "--from", "100000h", "--limit", "1")
	require.NoError(t, err)
	require.Equal(t, "1 of 62 matching events\n", stderr)
}

func TestCLIHelp(t *testing.T) {
	stdout, _, err := runCLI(t, "--help")
	require.NoError(t, err)
	for _, flag := range []string{"--server", "--cluster", "--verb", "--user", "--resource",
		"--namespace", "--q", "--from", "--to", "--limit", "--output", "Example:"} {
		require.Contains(t, stdout, flag)
	}
}

// TestCLIServerAndTokenFromEnv: AUDITPIPE_SERVER and AUDITPIPE_TOKEN stand
// for --server and --token; the flags win.
func TestCLIServerAndTokenFromEnv(t *testing.T) {
	protected := newSearchServer(t, func(h http.Handler) http.Handler { return search.RequireToken("tok", h) })

	t.Setenv(search.ServerEnv, protected.URL)
	_, _, err := runCLI(t, "--limit", "1")
	require.ErrorContains(t, err, "401", "the server from the environment, no token yet")
	t.Setenv(search.TokenEnv, "tok")
	stdout, _, err := runCLI(t, "--limit", "1")
	require.NoError(t, err)
	require.Contains(t, stdout, "TIME")
	_, _, err = runCLI(t, "--limit", "1", "--token", "wrong")
	require.ErrorContains(t, err, "401", "--token wins over the environment")
	_, _, err = runCLI(t, "--limit", "1", "--server", "http://127.0.0.1:1", "--timeout", "2s")
	require.ErrorContains(t, err, "127.0.0.1:1", "--server wins over the environment")
}

func TestCLIErrors(t *testing.T) {
	srv, _ := newServer(t)
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown flag", []string{"--verbs", "get"}, "verbs"},
		{"bad output", []string{"--output", "yaml"}, "--output"},
		{"bad time", []string{"--from", "last tuesday"}, "--from"},
		{"bad limit", []string{"--limit", "20000"}, "--limit"},
		{"positional", []string{"get"}, "unexpected argument"},
		{"bad server", []string{"--server", "127.0.0.1:8080"}, "--server"},
		{"server rejects", []string{"--server", srv.URL, "--from", "2024-05-02T00:00:00Z", "--to", "2024-05-01T00:00:00Z"}, "must be after from"},
		{"server down", []string{"--server", "http://127.0.0.1:1", "--timeout", "2s"}, "query http://127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.msg)
			require.Empty(t, stderr, "the error is returned for main to print once, not printed too")
			require.Empty(t, stdout)
		})
	}
}
