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

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// searchStore is a store holding every public fixture (GKE, kind, falco)
// as the processor forwards it (every field the apiserver sent, see
// localtest.Raw), the synthetic cordon event and the synthetic events of
// syntheticEvents, with the events as stored (duplicates removed, first
// copy kept).
func searchStore(tb testing.TB) (*local.Store, []localtest.Event) {
	tb.Helper()
	s, _ := openStore(tb, local.Options{})
	all := localtest.Raw(append(append(localtest.All(tb), localtest.Falco(tb)...), localtest.Cordon(tb)))
	all = append(all, syntheticEvents(tb)...)
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
	localtest.Key
	verb, user, groups, resource, subresource, namespace, name, apiGroup string
	code                                                                 int32
	sourceIP, userAgent                                                  string
	received, stage                                                      int64
}

func unhashedKeyOf(e localtest.Event) unhashedKey {
	k := unhashedKey{
		Key:  localtest.Key{Cluster: e.Pipeline.Cluster, AuditID: e.AuditID, Stage: e.Stage},
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

// syntheticEvents are events no public fixture has, clearly synthetic
// (cluster tke-synthetic): the deletion of a deployment named exactly
// "nginx" (TKE's published example query), with fields outside the typed
// schema (a k8s 1.37-style authenticationMetadata, user.extra with a
// credential id, a dotted label-like annotation, an empty annotation) and
// auditpipe's markers (webhook source, auditIDReused, detections).
func syntheticEvents(tb testing.TB) []localtest.Event {
	tb.Helper()
	raws := []string{
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"00000000-ngnx-0000-0000-synthetic002","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/default/deployments/nginx","verb":"delete","user":{"username":"alice@example.com","groups":["system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=0f6b1c52-aaaa"]}},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.31.0 (linux/amd64) kubernetes/abc","objectRef":{"resource":"deployments","namespace":"default","name":"nginx","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","code":200},"requestReceivedTimestamp":"2026-11-20T10:00:00.000000Z","stageTimestamp":"2026-11-20T10:00:00.020000Z","annotations":{"authorization.k8s.io/decision":"allow","app.kubernetes.io/name":"web","note":""},"authenticationMetadata":{"credentialSource":"ServiceAccountToken"},"auditpipe":{"schemaVersion":1,"cluster":"tke-synthetic","source":"webhook","receivedAt":"2026-11-20T10:00:00.050000Z","processedAt":"2026-11-20T10:00:00.080000Z","originalLevel":"Metadata","origin":{"topic":"audit.raw","partition":0,"offset":7},"auditIDReused":true,"detections":["privileged-pod"]}}`,
	}
	var out []localtest.Event
	for _, r := range raws {
		var ev schemas.ProcessedEvent
		require.NoError(tb, json.Unmarshal([]byte(r), &ev))
		out = append(out, localtest.Event{ProcessedEvent: ev, JSON: []byte(r), Raw: []byte(r)})
	}
	return out
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
func searchAll(tb testing.TB, s *local.Store, req local.SearchRequest, query string, pageSize int) []localtest.Key {
	tb.Helper()
	req.Limit = pageSize
	keys := []localtest.Key{}
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
			keys = append(keys, localtest.KeyOf(tb, e))
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

// TestSearchGolden runs one query per CLS rule (the published TKE examples,
// case, words, escapes, phrases, grouped values, ranges, wildcards, exists
// and empty, full-text scope, fields outside the typed schema) over the
// real public fixtures. Each expected result comes from the oracle
// (oracle_test.go: CLS's documented rules over the events decoded with
// encoding/json), and the store's answer must equal it exactly: same
// events, same order, across pages of 7, with and without a time range.
func TestSearchGolden(t *testing.T) {
	s, stored := searchStore(t)
	events := oracleEvents(t, stored)
	tests := []struct {
		name  string
		query string
		match func(oevent) bool
		// min is how many events the fixtures must yield at least, so that
		// no case passes by matching nothing; max bounds it where the
		// rule is about matching less.
		min, max int
	}{
		{name: "TKE example: only the deployment named nginx, not nginx-deployment",
			query: `objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
			match: func(e oevent) bool {
				return e.has("objectRef.resource", "deployments") && e.has("objectRef.name", "nginx") && e.has("verb", "delete")
			}, min: 1, max: 1},
		{name: "TKE example: cordoned nodes",
			query: `objectRef.resource:nodes AND requestObject:unschedulable`,
			match: func(e oevent) bool {
				return e.has("objectRef.resource", "nodes") && e.has("requestObject", "unschedulable")
			},
			min: 1},
		{name: "case-insensitive keyword", query: `verb:DELETE`,
			match: func(e oevent) bool { return e.has("verb", "delete") }, min: 5},
		{name: "case-insensitive resource", query: `objectRef.resource:ClusterRoleBindings`,
			match: func(e oevent) bool { return e.has("objectRef.resource", "clusterrolebindings") }, min: 2},
		{name: "'-' does not split: nginx is not nginx-deployment", query: `objectRef.name:nginx`,
			match: func(e oevent) bool { return e.has("objectRef.name", "nginx") }, min: 1},
		{name: "a word with '-'", query: `objectRef.name:NGINX-deployment`,
			match: func(e oevent) bool { return e.has("objectRef.name", "nginx-deployment") }, min: 2},
		{name: "'.' does not split", query: `objectRef.apiGroup:rbac.authorization.k8s.io`,
			match: func(e oevent) bool { return e.has("objectRef.apiGroup", "rbac.authorization.k8s.io") }, min: 5},
		{name: "':' splits: a word of a service account name", query: `user.username:kube-system`,
			match: func(e oevent) bool { return e.has("user.username", "kube-system") }, min: 2},
		{name: "escaped delimiter: words joined by OR", query: `user.username:system\:anonymous`,
			match: func(e oevent) bool { return e.has("user.username", "system", "anonymous") }, min: 3},
		{name: "quoted value: a phrase", query: `user.username:"system:anonymous" OR user.groups:"system:unauthenticated"`,
			match: func(e oevent) bool {
				return e.phrase("user.username", "system", "anonymous") || e.phrase("user.groups", "system", "unauthenticated")
			}, min: 1},
		{name: "phrase in order only", query: `user.username:"kube-system:serviceaccount"`,
			match: func(e oevent) bool { return e.phrase("user.username", "kube-system", "serviceaccount") }},
		{name: "grouped values", query: `verb:(get OR list)`,
			match: func(e oevent) bool { return e.has("verb", "get", "list") }, min: 20},
		{name: "grouped values, quoted and mixed case, with AND", query: `verb:(GET OR "list") AND objectRef.resource:pods`,
			match: func(e oevent) bool { return e.has("verb", "get", "list") && e.has("objectRef.resource", "pods") }, min: 5},
		{name: "range without colon", query: `responseStatus.code>=400 AND NOT responseStatus.code=404`,
			match: func(e oevent) bool { return code(e.Event) >= 400 && code(e.Event) != 404 }, min: 5},
		{name: "range with colon", query: `responseStatus.code:>=400 AND NOT responseStatus.code:=404 AND responseStatus.code:<500`,
			match: func(e oevent) bool { return code(e.Event) >= 400 && code(e.Event) != 404 && code(e.Event) < 500 }, min: 5},
		{name: "NOT keeps events that lack the field", query: `NOT responseStatus.code:>=300`,
			match: func(e oevent) bool { return code(e.Event) < 300 }, min: 50},
		{name: "? is one character", query: `objectRef.resource:pod? AND verb:g?t`,
			match: func(e oevent) bool { return e.has("objectRef.resource", "pod?") && e.has("verb", "g?t") }, min: 1},
		{name: "suffix wildcard", query: `objectRef.name:nginx-dep*`,
			match: func(e oevent) bool { return e.has("objectRef.name", "nginx-dep*") }, min: 2},
		{name: "infix wildcard", query: `objectRef.resource:cluster*bindings`,
			match: func(e oevent) bool { return e.has("objectRef.resource", "cluster*bindings") }, min: 2},
		{name: "field exists", query: `objectRef.subresource:*`,
			match: func(e oevent) bool { return e.present("objectRef.subresource") }, min: 2},
		{name: "missing is not empty", query: `NOT objectRef.namespace:*`,
			match: func(e oevent) bool { return !e.present("objectRef.namespace") }, min: 5},
		{name: "empty value", query: `annotations.note:""`,
			match: func(e oevent) bool { return e.present("annotations.note") && e.value("annotations.note") == "" }, min: 1},
		{name: "annotation key with dots and a slash", query: `annotations.authorization.k8s.io/decision:ALLOW`,
			match: func(e oevent) bool { return e.has("annotations.authorization.k8s.io/decision", "allow") }, min: 10},
		{name: "label-like map key", query: `annotations.app.kubernetes.io/name:web`,
			match: func(e oevent) bool { return e.has("annotations.app.kubernetes.io/name", "web") }, min: 1},
		{name: "user.extra key with dots", query: `user.extra.authentication.kubernetes.io/credential-id:JTI\=0f6b1c52-aaaa`,
			match: func(e oevent) bool {
				return e.has("user.extra.authentication.kubernetes.io/credential-id", "jti", "0f6b1c52-aaaa")
			}, min: 1},
		{name: "a field outside the typed schema", query: `authenticationMetadata.credentialSource:serviceaccounttoken`,
			match: func(e oevent) bool { return e.has("authenticationMetadata.credentialSource", "serviceaccounttoken") }, min: 1},
		{name: "legacy timestamp and metadata of old events", query: `timestamp:* AND metadata.creationTimestamp:2017*`,
			match: func(e oevent) bool { return e.present("timestamp") && e.has("metadata.creationTimestamp", "2017*") }, min: 30},
		{name: "auditpipe's fields by key", query: `auditpipe.source:webhook`,
			match: func(e oevent) bool { return e.has("auditpipe.source", "webhook") }, min: 1, max: 1},
		{name: "auditpipe's markers by key", query: `auditpipe.auditIDReused:true AND auditpipe.detections:privileged-pod`,
			match: func(e oevent) bool {
				return e.has("auditpipe.auditIDReused", "true") && e.has("auditpipe.detections", "privileged-pod")
			}, min: 1},
		{name: "full text does not see auditpipe's fields", query: `audit.raw OR webhook`,
			match: func(e oevent) bool { return e.text("audit.raw") || e.text("webhook") }},
		{name: "but a key does", query: `auditpipe.origin.topic:audit.raw`,
			match: func(e oevent) bool { return e.has("auditpipe.origin.topic", "audit.raw") }, min: 100},
		{name: "full text, a word", query: `FORBIDDEN`,
			match: func(e oevent) bool { return e.text("forbidden") }, min: 5},
		{name: "full text, a word with '-'", query: `kube-system`,
			match: func(e oevent) bool { return e.text("kube-system") }, min: 5},
		{name: "full text, implicit AND", query: `bob list`,
			match: func(e oevent) bool { return e.text("bob") && e.text("list") }, min: 1},
		{name: "full text, phrase", query: `"cannot list pods"`,
			match: func(e oevent) bool { return e.textPhrase("cannot", "list", "pods") }, min: 1},
		{name: "full text, wildcards", query: `replicaset-contr* OR deploy?ent-controller`,
			match: func(e oevent) bool { return e.text("replicaset-contr*") || e.text("deploy?ent-controller") }, min: 2},
		{name: "every event", query: `*`,
			match: func(oevent) bool { return true }, min: 100},
		{name: "injection attempts are values",
			query: `objectRef.name:"x' OR 1=1 --" OR verb:"delete') OR ('1'='1" OR "\") OR 1 --"`,
			match: func(e oevent) bool {
				return e.phrase("objectRef.name", "x", "or", "1", "1", "--") || e.phrase("verb", "delete", "or", "1", "1") || e.textPhrase("or", "1", "--")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := owantKeys(events, tt.match)
			require.GreaterOrEqual(t, len(want), tt.min, "the fixtures no longer exercise this query")
			if tt.max > 0 {
				require.LessOrEqual(t, len(want), tt.max, "the oracle itself matches too much")
			}
			got := searchAll(t, s, local.SearchRequest{}, tt.query, 7)
			require.Equal(t, want, got)
			// With a time range, full-text conditions filter the range
			// instead of driving the query: same answer.
			wide := local.SearchRequest{From: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}
			got = searchAll(t, s, wide, tt.query, 7)
			require.Equal(t, want, got, "with a time range")
			// A narrower range, whose events were not stored in time
			// order (the fixtures are written file by file): the word
			// index's id bounds must not lose any.
			from, to := time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 8, 0, 0, 0, 0, time.UTC)
			inRange := owantKeys(events, func(e oevent) bool {
				return tt.match(e) && !e.StageTimestamp.Before(from) && e.StageTimestamp.Before(to)
			})
			got = searchAll(t, s, local.SearchRequest{From: from, To: to}, tt.query, 7)
			require.Equal(t, inRange, got, "with a narrower time range")
		})
	}
}

func owantKeys(events []oevent, match func(oevent) bool) []localtest.Key {
	var sel []localtest.Event
	for _, e := range events {
		if match(e) {
			sel = append(sel, e.Event)
		}
	}
	return localtest.WantKeys(sel, func(localtest.Event) bool { return true })
}

func TestSearchPinnedResults(t *testing.T) {
	s, _ := searchStore(t)
	// The one cordon event, by its identity.
	res, err := search(t, s, local.SearchRequest{}, `objectRef.resource:nodes AND requestObject:unschedulable`)
	require.NoError(t, err)
	require.Equal(t, 1, res.Total)
	require.Equal(t, localtest.Key{Cluster: "tke-synthetic", AuditID: "00000000-cord-0000-0000-synthetic001", Stage: "ResponseComplete"}, localtest.KeyOf(t, res.Events[0]))

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
	want := localtest.WantKeys(events, func(e localtest.Event) bool {
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
	require.Contains(t, got, localtest.Key{Cluster: first.Pipeline.Cluster, AuditID: first.AuditID, Stage: first.Stage})
	got = searchAll(t, s, local.SearchRequest{Cluster: first.Pipeline.Cluster, To: at}, "auditID:"+first.AuditID, 10)
	require.NotContains(t, got, localtest.Key{Cluster: first.Pipeline.Cluster, AuditID: first.AuditID, Stage: first.Stage})
}

// TestSearchCursorWithoutTimestamps pages through events that share a
// timestamp and events with none (sorted last), where a keyset on the time
// alone would skip or repeat events.
func TestSearchCursorWithoutTimestamps(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	base := localtest.GKE(t)[0].ProcessedEvent
	var values [][]byte
	var want []localtest.Key
	for i := range 9 {
		ev := base
		ev.AuditID = fmt.Sprintf("id-%02d", i)
		if i >= 5 {
			ev.StageTimestamp = time.Time{} // stored as NULL
		}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		values = append(values, b)
		want = append(want, localtest.Key{Cluster: ev.Pipeline.Cluster, AuditID: ev.AuditID, Stage: ev.Stage})
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
			// A missing userAgent is NULL, a group of its own.
			tm, ua := row[0].(string), ""
			if row[2] != nil {
				ua = row[2].(string)
			}
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
		want := len(localtest.WantKeys(events, func(e localtest.Event) bool {
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
		{`"::"`, 0, "", "no words to search for"},
		{`* | SELECT time_series(__TIMESTAMP__, '5 minutes', '%H:%i', '0')`, 38, "", "time_series's window"},
		{`* | SELECT date_format(__TIMESTAMP__, '%H:%i %M')`, 38, "", "%M is not supported"},
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
