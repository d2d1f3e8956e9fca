package local_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// searchStore is a store holding every public fixture (GKE, kind, falco)
// and the synthetic cordon event, with the events as stored (duplicates
// removed, first copy kept).
func searchStore(tb testing.TB) (*local.Store, []localtest.Event) {
	tb.Helper()
	s, _ := openStore(tb, local.Options{})
	all := append(append(localtest.All(tb), localtest.Falco(tb)...), localtest.Cordon(tb))
	res, err := s.Write(context.Background(), localtest.Values(all))
	require.NoError(tb, err)
	require.Zero(tb, res.Invalid)
	seen := map[unhashedKey]bool{}
	var stored []localtest.Event
	for _, e := range all {
		k := unhashedKeyOf(e)
		if !seen[k] {
			seen[k] = true
			stored = append(stored, e)
		}
	}
	require.Equal(tb, len(stored), res.Inserted)
	return s, stored
}

// unhashedKey is when two fixtures (processed events without
// auditpipe.contentHash) are one event for the store (decision 0012): same
// cluster, auditID and stage, and the same values in the fields the
// pipeline never changes. The falco fixtures reuse an auditID for two
// requests by different users; those are two events.
type unhashedKey struct {
	key
	verb, user, groups, resource, subresource, namespace, name, apiGroup string
	code                                                                 int32
	sourceIP, userAgent                                                  string
	received, stage                                                      int64
}

func unhashedKeyOf(e localtest.Event) unhashedKey {
	k := unhashedKey{
		key:  key{e.Pipeline.Cluster, e.AuditID, e.Stage},
		verb: e.Verb, user: e.User.Username, groups: strings.Join(e.User.Groups, ","),
		userAgent: e.UserAgent,
		received:  e.RequestReceivedTimestamp.UnixMilli(), stage: e.StageTimestamp.UnixMilli(),
	}
	if o := e.ObjectRef; o != nil {
		k.resource, k.subresource, k.namespace, k.name, k.apiGroup = o.Resource, o.Subresource, o.Namespace, o.Name, o.APIGroup
	}
	if e.ResponseStatus != nil {
		k.code = e.ResponseStatus.Code
	}
	if len(e.SourceIPs) > 0 {
		k.sourceIP = e.SourceIPs[0]
	}
	return k
}

func search(tb testing.TB, s *local.Store, req local.SearchRequest, query string) (local.SearchResult, error) {
	tb.Helper()
	q, err := cql.Parse(query)
	require.NoError(tb, err, query)
	req.Query = q
	return s.Search(context.Background(), req)
}

// searchAll fetches every page of an event search, pageSize at a time,
// following the cursors, and checks that every page reports the same total.
func searchAll(tb testing.TB, s *local.Store, req local.SearchRequest, query string, pageSize int) []key {
	tb.Helper()
	req.Limit = pageSize
	keys := []key{}
	total := -1
	for range 1000 {
		res, err := search(tb, s, req, query)
		require.NoError(tb, err, query)
		if total >= 0 {
			require.Equal(tb, total, res.Total, "total changed between pages")
		}
		total = res.Total
		require.LessOrEqual(tb, len(res.Events), pageSize)
		for _, e := range res.Events {
			keys = append(keys, keyOf(tb, e))
		}
		if res.Cursor == "" {
			require.Equal(tb, total, len(keys), "pages do not add up to the total: %s", query)
			return keys
		}
		require.Len(tb, res.Events, pageSize, "a page before the last is full")
		req.Cursor = res.Cursor
	}
	tb.Fatal("more than 1000 pages")
	return nil
}

// wantKeys returns the keys of the events match accepts, in the result
// order: newest first, then cluster, auditID, stage.
func wantKeys(events []localtest.Event, match func(localtest.Event) bool) []key {
	var sel []localtest.Event
	for _, e := range events {
		if match(e) {
			sel = append(sel, e)
		}
	}
	slices.SortFunc(sel, func(a, b localtest.Event) int {
		if c := b.StageTimestamp.UnixMilli() - a.StageTimestamp.UnixMilli(); c != 0 {
			return cmp.Compare(c, 0)
		}
		return cmp.Or(cmp.Compare(a.Pipeline.Cluster, b.Pipeline.Cluster),
			cmp.Compare(a.AuditID, b.AuditID), cmp.Compare(a.Stage, b.Stage))
	})
	out := []key{}
	for _, e := range sel {
		out = append(out, key{e.Pipeline.Cluster, e.AuditID, e.Stage})
	}
	return out
}

// The oracle's own token rules (written independently of the store's): a
// field matches a word when the word is one of the field's alphanumeric
// runs, ignoring case.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
}

func hasWord(s, w string) bool { return slices.Contains(words(s), strings.ToLower(w)) }

func code(e localtest.Event) int {
	if e.ResponseStatus == nil {
		return 0
	}
	return int(e.ResponseStatus.Code)
}

func resource(e localtest.Event) (res, sub, name, group string) {
	if e.ObjectRef == nil {
		return "", "", "", ""
	}
	return e.ObjectRef.Resource, e.ObjectRef.Subresource, e.ObjectRef.Name, e.ObjectRef.APIGroup
}

// TestSearchGolden runs the published TKE examples and the everyday audit
// questions over the real public fixtures. Each expected result comes from an
// oracle written in Go over the decoded events, and the store's answer must
// equal it exactly: same events, same order, across pages of 7.
func TestSearchGolden(t *testing.T) {
	s, events := searchStore(t)
	tests := []struct {
		name  string
		query string
		match func(localtest.Event) bool
		// min is how many events the fixtures must yield at least, so that
		// no case passes by matching nothing.
		min int
	}{
		{
			name:  "TKE example: deleted nginx deployments",
			query: `objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
			match: func(e localtest.Event) bool {
				r, _, name, _ := resource(e)
				return r == "deployments" && hasWord(name, "nginx") && e.Verb == "delete"
			},
			min: 1,
		},
		{
			name:  "TKE example: cordoned nodes",
			query: `objectRef.resource:nodes AND requestObject:unschedulable`,
			match: func(e localtest.Event) bool {
				r, _, _, _ := resource(e)
				return r == "nodes" && strings.Contains(string(e.RequestObject), `"unschedulable"`)
			},
			min: 1,
		},
		{
			name:  "exec and attach into pods",
			query: `objectRef.resource:pods AND (objectRef.subresource:exec OR objectRef.subresource:attach)`,
			match: func(e localtest.Event) bool {
				r, sub, _, _ := resource(e)
				return r == "pods" && (sub == "exec" || sub == "attach")
			},
			min: 2,
		},
		{
			name:  "RBAC changes",
			query: `objectRef.apiGroup:"rbac.authorization.k8s.io" AND NOT verb:get AND NOT verb:list AND not verb:watch`,
			match: func(e localtest.Event) bool {
				_, _, _, g := resource(e)
				return g == "rbac.authorization.k8s.io" && e.Verb != "get" && e.Verb != "list" && e.Verb != "watch"
			},
			min: 5,
		},
		{
			name:  "anonymous access",
			query: `user.username:"system:anonymous" OR user.groups:"system:unauthenticated"`,
			match: func(e localtest.Event) bool {
				return e.User.Username == "system:anonymous" || slices.Contains(e.User.Groups, "system:unauthenticated")
			},
			min: 1,
		},
		{
			name:  "401 and 403 responses",
			query: `responseStatus.code:401 OR responseStatus.code:403`,
			match: func(e localtest.Event) bool { return code(e) == 401 || code(e) == 403 },
			min:   5,
		},
		{
			name:  "failed requests except not-found",
			query: `responseStatus.code>=400 AND NOT responseStatus.code=404`,
			match: func(e localtest.Event) bool { return code(e) >= 400 && code(e) != 404 },
			min:   5,
		},
		{
			name:  "NOT keeps events that lack the field",
			query: `NOT responseStatus.code>=300`,
			match: func(e localtest.Event) bool { return code(e) < 300 },
			min:   50,
		},
		{
			name:  "field exists",
			query: `objectRef.subresource:*`,
			match: func(e localtest.Event) bool { _, sub, _, _ := resource(e); return sub != "" },
			min:   2,
		},
		{
			name:  "text field by word, case-insensitive",
			query: `user.username:SYSDIG`,
			match: func(e localtest.Event) bool { return hasWord(e.User.Username, "sysdig") },
			min:   5,
		},
		{
			name:  "text field, suffix wildcard",
			query: `objectRef.name:nginx-dep*`,
			match: func(e localtest.Event) bool {
				_, _, name, _ := resource(e)
				w := words(name)
				for i := 0; i+1 < len(w); i++ {
					if w[i] == "nginx" && strings.HasPrefix(w[i+1], "dep") {
						return true
					}
				}
				return false
			},
			min: 2,
		},
		{
			name:  "keyword field, infix wildcard",
			query: `objectRef.resource:cluster*bindings`,
			match: func(e localtest.Event) bool {
				r, _, _, _ := resource(e)
				return strings.HasPrefix(r, "cluster") && strings.HasSuffix(r, "bindings")
			},
			min: 1,
		},
		{
			name:  "annotation key with dots and a slash",
			query: `annotations.authorization.k8s.io/decision:allow`,
			match: func(e localtest.Event) bool { return e.Annotations["authorization.k8s.io/decision"] == "allow" },
			min:   10,
		},
		{
			name:  "numeric range on a request body path",
			query: `requestObject.spec.replicas>=1`,
			match: func(e localtest.Event) bool {
				var body struct {
					Spec struct {
						Replicas *float64 `json:"replicas"`
					} `json:"spec"`
				}
				_ = json.Unmarshal(e.RequestObject, &body)
				return body.Spec.Replicas != nil && *body.Spec.Replicas >= 1
			},
			min: 1,
		},
		{
			name:  "full text, a word",
			query: `forbidden`,
			match: func(e localtest.Event) bool { return fullTextHas(e, "forbidden") },
			min:   5,
		},
		{
			name:  "full text, implicit AND",
			query: `bob list`,
			match: func(e localtest.Event) bool { return fullTextHas(e, "bob") && fullTextHas(e, "list") },
			min:   1,
		},
		{
			name:  "every event",
			query: `*`,
			match: func(localtest.Event) bool { return true },
			min:   100,
		},
		{
			name:  "injection attempts are values",
			query: `objectRef.name:"x' OR 1=1 --" OR verb:"delete') OR ('1'='1" OR "\") OR 1 --"`,
			match: func(localtest.Event) bool { return false },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := wantKeys(events, tt.match)
			require.GreaterOrEqual(t, len(want), tt.min, "the fixtures no longer exercise this query")
			got := searchAll(t, s, local.SearchRequest{}, tt.query, 7)
			require.Equal(t, want, got)
			// With a time range, full-text conditions filter the range
			// instead of driving the query: same answer.
			wide := local.SearchRequest{From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}
			got = searchAll(t, s, wide, tt.query, 7)
			require.Equal(t, want, got, "with a time range")
		})
	}
}

// fullTextHas is the oracle of a one-word full-text search: the word is a
// token of some string or number value of the event (keys do not count).
func fullTextHas(e localtest.Event, word string) bool {
	var v any
	if err := json.Unmarshal(e.JSON, &v); err != nil {
		panic(err)
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				if walk(x) {
					return true
				}
			}
		case []any:
			for _, x := range v {
				if walk(x) {
					return true
				}
			}
		case string:
			return hasWord(v, word)
		case float64:
			return hasWord(fmt.Sprint(v), word)
		}
		return false
	}
	return walk(v)
}

func TestSearchPinnedResults(t *testing.T) {
	s, _ := searchStore(t)
	// The one cordon event, by its identity.
	res, err := search(t, s, local.SearchRequest{}, `objectRef.resource:nodes AND requestObject:unschedulable`)
	require.NoError(t, err)
	require.Equal(t, 1, res.Total)
	require.Equal(t, key{"tke-synthetic", "00000000-cord-0000-0000-synthetic001", "ResponseComplete"}, keyOf(t, res.Events[0]))

	// falco's delete_deployment.json: nginx-deployment in default.
	res, err = search(t, s, local.SearchRequest{}, `objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`)
	require.NoError(t, err)
	require.NotZero(t, res.Total)
	for _, e := range res.Events {
		var ev struct {
			ObjectRef struct{ Name string } `json:"objectRef"`
		}
		require.NoError(t, json.Unmarshal(e, &ev))
		require.Contains(t, ev.ObjectRef.Name, "nginx")
	}
}

func TestSearchTimeRangeAndCluster(t *testing.T) {
	s, events := searchStore(t)
	from := time.Date(2017, 9, 11, 20, 0, 0, 0, time.UTC)
	to := time.Date(2020, 1, 8, 0, 0, 0, 0, time.UTC)
	want := wantKeys(events, func(e localtest.Event) bool {
		return e.Pipeline.Cluster == localtest.ClusterKind && !e.StageTimestamp.Before(from) && e.StageTimestamp.Before(to)
	})
	require.NotEmpty(t, want)
	got := searchAll(t, s, local.SearchRequest{Cluster: localtest.ClusterKind, From: from, To: to}, "*", 5)
	require.Equal(t, want, got)

	// The range is half-open: an event exactly at To is left out, one
	// exactly at From is in.
	first := events[0]
	at := first.StageTimestamp.Truncate(time.Millisecond)
	got = searchAll(t, s, local.SearchRequest{Cluster: first.Pipeline.Cluster, From: at, To: at.Add(time.Millisecond)}, "auditID:"+first.AuditID, 10)
	require.Contains(t, got, key{first.Pipeline.Cluster, first.AuditID, first.Stage})
	got = searchAll(t, s, local.SearchRequest{Cluster: first.Pipeline.Cluster, To: at}, "auditID:"+first.AuditID, 10)
	require.NotContains(t, got, key{first.Pipeline.Cluster, first.AuditID, first.Stage})
}

// TestSearchCursorWithoutTimestamps pages through events that share a
// timestamp and events with none (sorted last), where a keyset on the time
// alone would skip or repeat events.
func TestSearchCursorWithoutTimestamps(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	base := localtest.GKE(t)[0].ProcessedEvent
	var values [][]byte
	var want []key
	for i := range 9 {
		ev := base
		ev.AuditID = fmt.Sprintf("id-%02d", i)
		if i >= 5 {
			ev.StageTimestamp = time.Time{} // stored as NULL
		}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		values = append(values, b)
		want = append(want, key{ev.Pipeline.Cluster, ev.AuditID, ev.Stage})
	}
	_, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	for _, size := range []int{1, 2, 4, 9, 20} {
		require.Equal(t, want, searchAll(t, s, local.SearchRequest{}, "*", size), "page size %d", size)
	}
}

func TestSearchAnalysis(t *testing.T) {
	s, events := searchStore(t)

	t.Run("TKE example: requests per minute and user agent", func(t *testing.T) {
		res, err := search(t, s, local.SearchRequest{},
			`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`)
		require.NoError(t, err)
		require.Equal(t, []string{"time", "qps", "userAgent"}, res.Columns)
		type group struct {
			time, ua string
		}
		counts := map[group]int64{}
		for _, e := range events {
			counts[group{e.StageTimestamp.UTC().Truncate(time.Minute).Format("2006-01-02 15:04:05"), e.UserAgent}]++
		}
		// CLS's default LIMIT is 100, as here.
		require.Len(t, res.Rows, min(len(counts), 100))
		prev := ""
		for _, row := range res.Rows {
			tm, ua := row[0].(string), row[2].(string)
			require.GreaterOrEqual(t, tm, prev, "ordered by time")
			prev = tm
			require.Equal(t, counts[group{tm, ua}], row[1], "count of %s %q", tm, ua)
		}
	})

	t.Run("top users by deletes", func(t *testing.T) {
		res, err := search(t, s, local.SearchRequest{},
			`verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC, user LIMIT 10`)
		require.NoError(t, err)
		counts := map[string]int64{}
		for _, e := range events {
			if e.Verb == "delete" {
				counts[e.User.Username]++
			}
		}
		var want [][]any
		for u, n := range counts {
			want = append(want, []any{u, n})
		}
		slices.SortFunc(want, func(a, b []any) int {
			return cmp.Or(cmp.Compare(b[1].(int64), a[1].(int64)), cmp.Compare(a[0].(string), b[0].(string)))
		})
		require.NotEmpty(t, want)
		require.Equal(t, want[:min(10, len(want))], res.Rows)
		require.Equal(t, []string{"user", "deletes"}, res.Columns)
	})

	t.Run("401 and 403 by user and code, positions in GROUP BY", func(t *testing.T) {
		res, err := search(t, s, local.SearchRequest{Cluster: localtest.ClusterKind},
			`responseStatus.code:401 OR responseStatus.code:403 | select "user.username", "responseStatus.code" as code, count(1) as n group by 1, 2 order by n desc, 1, 2`)
		require.NoError(t, err)
		require.Equal(t, []string{`"user.username"`, "code", "n"}, res.Columns)
		var total int64
		for _, r := range res.Rows {
			total += r[2].(int64)
		}
		want := len(wantKeys(events, func(e localtest.Event) bool {
			return e.Pipeline.Cluster == localtest.ClusterKind && (code(e) == 401 || code(e) == 403)
		}))
		require.NotZero(t, want)
		require.Equal(t, int64(want), total)
	})

	t.Run("WHERE, HAVING, functions, json paths", func(t *testing.T) {
		res, err := search(t, s, local.SearchRequest{},
			`* | SELECT lower(verb) AS v, count(DISTINCT "auditpipe.cluster") AS clusters, max("responseStatus.code") AS worst, approx_distinct("user.username") AS users WHERE "objectRef.resource" IN ('secrets', 'configmaps') AND "requestURI" LIKE '/api/%' GROUP BY v HAVING count(*) >= 1 ORDER BY v`)
		require.NoError(t, err)
		require.NotEmpty(t, res.Rows)
		verbs := map[string]bool{}
		for _, e := range events {
			if r, _, _, _ := resource(e); (r == "secrets" || r == "configmaps") && strings.HasPrefix(e.RequestURI, "/api/") {
				verbs[strings.ToLower(e.Verb)] = true
			}
		}
		var got []string
		for _, r := range res.Rows {
			got = append(got, r[0].(string))
		}
		require.Equal(t, slices.Sorted(func(yield func(string) bool) {
			for v := range verbs {
				if !yield(v) {
					return
				}
			}
		}), got)
	})

	t.Run("date_trunc and a time-range parameter", func(t *testing.T) {
		from := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		res, err := search(t, s, local.SearchRequest{From: from},
			`* | SELECT date_trunc('day', __TIMESTAMP__) AS day, count(*) AS n GROUP BY day ORDER BY day`)
		require.NoError(t, err)
		days := map[string]int64{}
		for _, e := range events {
			if !e.StageTimestamp.Before(from) {
				days[e.StageTimestamp.UTC().Format("2006-01-02")+" 00:00:00"]++
			}
		}
		require.Len(t, res.Rows, len(days))
		for _, r := range res.Rows {
			require.Equal(t, days[r[0].(string)], r[1])
		}
	})
}

func TestSearchErrors(t *testing.T) {
	s, _ := searchStore(t)
	tests := []struct {
		query  string
		pos    int // -1: not a *cql.Error
		param  string
		errMsg string
	}{
		{`* | SELECT count(*) LIMIT 20000`, 26, "", "over the maximum"},
		{`* | SELECT interval 1 minute`, 11, "", "only allowed as the second argument of histogram"},
		{`* | SELECT histogram(__TIMESTAMP__, 5)`, 36, "", "must be an INTERVAL"},
		{`* | SELECT date_trunc('week', __TIMESTAMP__)`, 22, "", "date_trunc's first argument"},
		{`* | SELECT verb ORDER BY 3`, 25, "", "out of range"},
		{`* | SELECT verb WHERE count(*) > 1`, -1, "q", "rejected"},
		{`"---"`, 0, "", "no letters or digits"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			_, err := search(t, s, local.SearchRequest{}, tt.query)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.errMsg)
			if tt.pos >= 0 {
				var pe *cql.Error
				require.ErrorAs(t, err, &pe)
				require.Equal(t, tt.pos, pe.Pos, "%v", err)
				return
			}
			var ie *local.InvalidSearchError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, tt.param, ie.Param)
		})
	}

	_, err := search(t, s, local.SearchRequest{Cursor: "garbage"}, "*")
	var ie *local.InvalidSearchError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "cursor", ie.Param)

	res, err := search(t, s, local.SearchRequest{Limit: 1}, "*")
	require.NoError(t, err)
	require.NotEmpty(t, res.Cursor)
	_, err = search(t, s, local.SearchRequest{Cursor: res.Cursor}, "* | SELECT count(*)")
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "cursor", ie.Param)
}
