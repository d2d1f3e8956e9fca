package search_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

const (
	tkeDelete    = `objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`
	tkeCordon    = `objectRef.resource:nodes AND requestObject:unschedulable`
	tkeHistogram = `* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`
)

// newSearchServer serves the API, wrapped as given, over a real store with
// every public fixture and the synthetic cordon event.
func newSearchServer(tb testing.TB, wrap func(http.Handler) http.Handler) *httptest.Server {
	tb.Helper()
	store, err := local.Open(filepath.Join(tb.TempDir(), "events.db"), local.Options{})
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, store.Close()) })
	all := append(append(localtest.All(tb), localtest.Falco(tb)...), localtest.Cordon(tb))
	_, err = store.Write(context.Background(), localtest.Values(all))
	require.NoError(tb, err)
	h := search.NewHandler(store, nil)
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	return srv
}

func getSearch(tb testing.TB, srv *httptest.Server, params url.Values, header http.Header) (int, map[string]json.RawMessage, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+search.SearchPath+"?"+params.Encode(), nil)
	require.NoError(tb, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	var body bytes.Buffer
	_, err = body.ReadFrom(resp.Body)
	require.NoError(tb, err)
	require.Equal(tb, "application/json", resp.Header.Get("Content-Type"))
	var fields map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(body.Bytes(), &fields), body.String())
	return resp.StatusCode, fields, body.Bytes()
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestSearchAPIEventsAndCursor(t *testing.T) {
	srv := newSearchServer(t, nil)

	code, fields, body := getSearch(t, srv, url.Values{"q": {tkeCordon}}, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, []string{"events", "total"}, keys(fields), "no cursor on the last page")
	var res search.SearchEventsResponse
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, 1, res.Total)
	require.Equal(t, "nodes", decode(t, res.Events[0]).ObjectRef.Resource)

	// Page through every failed request, 4 at a time: the pages together
	// are the single-page answer, in the same order, without repeats.
	q := url.Values{"q": {"responseStatus.code>=400"}, "limit": {"10000"}}
	code, _, body = getSearch(t, srv, q, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	var all search.SearchEventsResponse
	require.NoError(t, json.Unmarshal(body, &all))
	require.Greater(t, all.Total, 8)
	require.Len(t, all.Events, all.Total)

	var paged []json.RawMessage
	q.Set("limit", "4")
	for {
		code, fields, body := getSearch(t, srv, q, nil)
		require.Equal(t, http.StatusOK, code, string(body))
		var page search.SearchEventsResponse
		require.NoError(t, json.Unmarshal(body, &page))
		require.Equal(t, all.Total, page.Total)
		paged = append(paged, page.Events...)
		if page.Cursor == "" {
			require.NotContains(t, fields, "cursor")
			break
		}
		q.Set("cursor", page.Cursor)
	}
	require.Equal(t, all.Events, paged)

	// Time range and cluster are parameters, as in the console.
	code, _, body = getSearch(t, srv, url.Values{"q": {"*"}, "cluster": {localtest.ClusterGKE},
		"from": {"2020-01-07T00:00:00Z"}, "to": {"1578441600000"}}, nil) // 2020-01-08
	require.Equal(t, http.StatusOK, code, string(body))
	require.NoError(t, json.Unmarshal(body, &res))
	require.NotZero(t, res.Total)
	for _, e := range res.Events {
		ev := decode(t, e)
		require.Equal(t, localtest.ClusterGKE, ev.Pipeline.Cluster)
		require.Equal(t, "2020-01-07", ev.StageTimestamp.UTC().Format("2006-01-02"))
	}
}

func TestSearchAPIRows(t *testing.T) {
	srv := newSearchServer(t, nil)
	code, fields, body := getSearch(t, srv, url.Values{"q": {tkeHistogram}}, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, []string{"columns", "rows"}, keys(fields))
	var res search.SearchRowsResponse
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, []string{"time", "qps", "userAgent"}, res.Columns)
	require.NotEmpty(t, res.Rows)
	require.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:00$`, res.Rows[0][0])

	// A limit parameter with SQL is accepted and ignored, as CLS's API
	// does: the statement's LIMIT (default 100) decides.
	code, _, body = getSearch(t, srv, url.Values{"q": {`* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY verb LIMIT 3`}, "limit": {"1"}}, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.NoError(t, json.Unmarshal(body, &res))
	require.Len(t, res.Rows, 3)

	// No match: an empty list, not null.
	code, _, body = getSearch(t, srv, url.Values{"q": {`verb:nosuchverb | SELECT count(*) AS n GROUP BY verb`}}, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.JSONEq(t, `{"columns":["n"],"rows":[]}`, string(body))
}

func TestSearchAPIErrors(t *testing.T) {
	srv := newSearchServer(t, nil)
	tests := []struct {
		name   string
		params url.Values
		param  string
		pos    int // -1 when the error has no position
		msg    string
	}{
		{"syntax", url.Values{"q": {"verb:get AND (verb:list"}}, "q", 13, "unbalanced '('"},
		{"function", url.Values{"q": {"* | SELECT sleep(10)"}}, "q", 11, "unsupported function sleep"},
		{"limit in SQL", url.Values{"q": {"* | SELECT verb LIMIT 10001"}}, "q", 22, "over the maximum"},
		{"engine rejects", url.Values{"q": {"* | SELECT verb WHERE count(*) > 1"}}, "q", -1, "rejected"},
		{"bad cursor", url.Values{"q": {"*"}, "cursor": {"bm9wZQ"}}, "cursor", -1, "not a cursor"},
		{"unknown", url.Values{"query": {"*"}}, "query", -1, "unknown parameter"},
		{"twice", url.Values{"q": {"a", "b"}}, "q", -1, "more than once"},
		{"limit", url.Values{"limit": {"0"}}, "limit", -1, "from 1 to 10000"},
		{"time", url.Values{"from": {"yesterday"}}, "from", -1, "RFC 3339"},
		{"range", url.Values{"from": {"2024-05-02T00:00:00Z"}, "to": {"2024-05-01T00:00:00Z"}}, "to", -1, "after from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := getSearch(t, srv, tt.params, nil)
			require.Equal(t, http.StatusBadRequest, code, string(body))
			var e search.ErrorResponse
			require.NoError(t, json.Unmarshal(body, &e))
			require.Equal(t, tt.param, e.Parameter)
			require.Contains(t, e.Error, tt.msg)
			if tt.pos >= 0 {
				require.NotNil(t, e.Position)
				require.Equal(t, tt.pos, *e.Position)
				require.Contains(t, e.Error, "\n  "+strings.Repeat(" ", tt.pos)+"^")
			} else {
				require.Nil(t, e.Position)
			}
		})
	}

	resp, err := http.Post(srv.URL+search.SearchPath, "text/plain", strings.NewReader("*"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestSearchAPIStoreErrorIs500WithoutDetails(t *testing.T) {
	srv := httptest.NewServer(search.NewHandler(failingQuerier{}, nil))
	defer srv.Close()
	code, _, body := getSearch(t, srv, url.Values{"q": {"*"}}, nil)
	require.Equal(t, http.StatusInternalServerError, code)
	require.NotContains(t, string(body), "/var/lib")
}

func TestRequireToken(t *testing.T) {
	srv := newSearchServer(t, func(h http.Handler) http.Handler { return search.RequireToken("s3cret-token", h) })
	q := url.Values{"q": {tkeCordon}}
	for _, h := range []http.Header{
		nil,
		{"Authorization": {"Bearer wrong"}},
		{"Authorization": {"Basic czNjcmV0LXRva2Vu"}},
		{"Authorization": {"Bearer s3cret-token-and-more"}},
		{"Authorization": {"Bearer "}},
	} {
		code, fields, body := getSearch(t, srv, q, h)
		require.Equal(t, http.StatusUnauthorized, code, "%v: %s", h, body)
		require.Contains(t, fields, "error")
	}
	code, _, body := getSearch(t, srv, q, http.Header{"Authorization": {"bearer s3cret-token"}})
	require.Equal(t, http.StatusOK, code, string(body))

	// An empty configured token refuses everything rather than nothing.
	closed := httptest.NewServer(search.RequireToken("", http.NotFoundHandler()))
	defer closed.Close()
	code, _, _ = getSearch(t, closed, q, http.Header{"Authorization": {"Bearer "}})
	require.Equal(t, http.StatusUnauthorized, code)
}

func TestTokenRequired(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":          false,
		"127.0.0.53:8080":         false,
		"[::1]:8080":              false,
		"localhost:8080":          false,
		"LOCALHOST:8080":          false,
		":8080":                   true,
		"0.0.0.0:8080":            true,
		"[::]:8080":               true,
		"10.0.0.5:8080":           true,
		"auditpipe.internal:8080": true,
	} {
		got, err := search.TokenRequired(addr)
		require.NoError(t, err, addr)
		require.Equal(t, want, got, addr)
	}
	_, err := search.TokenRequired("8080")
	require.Error(t, err)

	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	_, err = search.ProtectAPI("0.0.0.0:8080", "", ok)
	require.ErrorContains(t, err, "token is required")
	h, err := search.ProtectAPI("127.0.0.1:8080", "", ok)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusTeapot, rec.Code, "loopback without a token is open")
	h, err = search.ProtectAPI("0.0.0.0:8080", "t", ok)
	require.NoError(t, err)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusUnauthorized, rec.Code)
}

func runSearchCLI(tb testing.TB, args ...string) (stdout, stderr string, err error) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err = search.RunSearchCommand(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestSearchCLI(t *testing.T) {
	srv := newSearchServer(t, nil)

	stdout, stderr, err := runSearchCLI(t, "--server", srv.URL, tkeCordon)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 2, stdout)
	require.Equal(t, []string{"TIME", "CLUSTER", "USER", "VERB", "RESOURCE", "NAMESPACE/NAME", "CODE"}, strings.Fields(lines[0]))
	require.Contains(t, lines[1], "nodes")
	require.Contains(t, lines[1], "node-1")
	require.Equal(t, "1 of 1 matching events\n", stderr)

	// JSON lines of events; the query may come as several arguments.
	stdout, stderr, err = runSearchCLI(t, "--server", srv.URL, "--output", "json", "--limit", "2", "responseStatus.code>=400", "AND", "verb:list")
	require.NoError(t, err)
	lines = strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 2)
	for _, l := range lines {
		ev := decode(t, json.RawMessage(l))
		require.Equal(t, "list", ev.Verb)
		require.GreaterOrEqual(t, ev.ResponseStatus.Code, int32(400))
	}
	require.Contains(t, stderr, "next page: --cursor ")
	cursor := strings.TrimSpace(stderr[strings.Index(stderr, "--cursor ")+len("--cursor "):])
	stdout2, _, err := runSearchCLI(t, "--server", srv.URL, "--output", "json", "--limit", "2", "--cursor", cursor, "responseStatus.code>=400 AND verb:list")
	require.NoError(t, err)
	require.NotEmpty(t, stdout2)
	require.NotContains(t, stdout, strings.SplitN(stdout2, "\n", 2)[0], "the next page starts after this one")

	// Analysis rows: a table, and one JSON object per row.
	stdout, _, err = runSearchCLI(t, "--server", srv.URL,
		`verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC, user LIMIT 10`)
	require.NoError(t, err)
	require.Equal(t, []string{"user", "deletes"}, strings.Fields(strings.SplitN(stdout, "\n", 2)[0]))
	stdout, _, err = runSearchCLI(t, "--server", srv.URL, "--output", "json", tkeHistogram)
	require.NoError(t, err)
	first := strings.SplitN(stdout, "\n", 2)[0]
	require.Regexp(t, `^\{"time":"[0-9: -]+","qps":\d+,"userAgent":(".*"|null)\}$`, first) // NULL: sent no userAgent
}

func TestSearchCLIErrorsAndToken(t *testing.T) {
	srv := newSearchServer(t, func(h http.Handler) http.Handler { return search.RequireToken("tok", h) })

	_, stderr, err := runSearchCLI(t, "--server", srv.URL, "--token", "tok", "verb:get AND")
	require.Error(t, err)
	// The server's positioned message reaches the terminal (main prints
	// the error, once), caret included.
	require.Contains(t, err.Error(), "position 12: expected a search term")
	require.Contains(t, err.Error(), "  verb:get AND\n              ^")
	require.Empty(t, stderr)

	_, _, err = runSearchCLI(t, "--server", srv.URL, "*")
	require.ErrorContains(t, err, "401")

	t.Setenv("AUDITPIPE_API_TOKEN", "tok") // the variable of earlier releases still works
	_, _, err = runSearchCLI(t, "--server", srv.URL, "*")
	require.NoError(t, err)

	for _, args := range [][]string{
		{},
		{"--output", "yaml", "*"},
		{"--limit", "0", "--limit", "10001", "*"},
		{"--from", "last week", "*"},
		{"--server", "localhost:8080", "*"},
	} {
		_, stderr, err := runSearchCLI(t, args...)
		require.ErrorContains(t, err, "search --help", "%q", args)
		require.Empty(t, stderr, "%q", args)
	}
}

func TestSearchCLIHelp(t *testing.T) {
	stdout, _, err := runSearchCLI(t, "--help")
	require.NoError(t, err)
	for _, s := range []string{"--server", "--token", "--cluster", "--from", "--to", "--limit", "--cursor",
		"--output", "Examples:", tkeDelete, tkeCordon, "histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute)"} {
		require.Contains(t, stdout, s)
	}
}
