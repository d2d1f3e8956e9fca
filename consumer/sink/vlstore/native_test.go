package vlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
)

// jsonPathEvents are varied events whose JSON paths vary too: the
// decision annotation present (mixed case, delimiters, a phrase in a
// longer value), empty or missing; an annotation holding a number; extra
// keys with a number, a boolean, an array and an object; and user names
// and object names that phrases find or almost find.
func jsonPathEvents(t *testing.T, n int, start time.Time) [][]byte {
	t.Helper()
	decisions := []string{"forbid", "allow", "Forbid", "FORBID:later", "", "-", "not-forbid", "forbidden", "forbid allow", "allow; forbid"}
	names := []string{"nginx", "nginx-1", "NGINX", "my-nginx", "nginx.deployment", "nginxx", "redis-7", "redis--7", "redis 7", "x-redis-7-y", "redis-70"}
	out := varied(t, n, start)
	for i, v := range out {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(v, &ev))
		ann, _ := ev["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
		}
		switch d := decisions[i%len(decisions)]; {
		case i%13 == 3:
			delete(ann, "authorization.k8s.io/decision") // missing
		default:
			ann["authorization.k8s.io/decision"] = d // "" present and empty
		}
		ann["latency"] = fmt.Sprint(i % 7)
		if i%3 == 0 {
			ann["reason"] = `RBAC: allowed by ClusterRoleBinding "admin" of ClusterRole "cluster-admin" to User "u-` + fmt.Sprint(i%5) + `"`
		}
		ev["annotations"] = ann
		switch i % 4 {
		case 0:
			ev["extra"] = map[string]any{"n": i % 5, "ok": i%2 == 0, "list": []any{"a-b", "forbid", i % 3}, "obj": map[string]any{"k": "forbid"}}
		case 1:
			ev["extra"] = map[string]any{"n": 1.5, "ok": "true"}
		}
		if i%29 == 7 {
			ev["responseStatus"] = map[string]any{"code": 0} // NULL in SQLite's column
		}
		ref := ev["objectRef"].(map[string]any)
		ref["name"] = names[i%len(names)]
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		out[i] = b
	}
	return out
}

// TestNativeAgainstSQLite: the filters that became native (JSON paths,
// phrases, several words) answer as the SQLite store does, over pages,
// with the request's cluster and time range, and in the native analyses.
func TestNativeAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := openPair(t, append(localtest.Values(localtest.All(t)), jsonPathEvents(t, 700, start)...))
	from, to := start.Add(40*time.Millisecond+100*time.Microsecond), start.Add(190*time.Millisecond+700*time.Microsecond)
	queries := []string{
		`annotations.authorization.k8s.io/decision:forbid`,
		`annotations.authorization.k8s.io/decision:FORBID`,
		`annotations.authorization.k8s.io/decision:forb*`,
		`annotations.authorization.k8s.io/decision:"forbid allow"`,
		`annotations.authorization.k8s.io/decision:"allow forbid"`,
		`annotations.authorization.k8s.io/decision:"forbid later"`,
		`NOT annotations.authorization.k8s.io/decision:forbid`,
		`verb:delete AND annotations.authorization.k8s.io/decision:forbid`,
		`verb:delete AND annotations.authorization.k8s.io/decision:forbid AND objectRef.namespace:team-a`,
		`annotations.authorization.k8s.io/decision:allow OR responseStatus.code>=400`,
		`annotations.latency:3`, `annotations.reason:"cluster-admin"`, `annotations.reason:"ClusterRole cluster-admin to user"`,
		`annotations.reason:"clusterrole \"cluster-admin"`, `annotations.reason:u-3`,
		`extra.n:3`, `extra.n:1.5`, `extra.n:"1.5"`, `extra.ok:true`, `extra.list:forbid`, `extra.list:"a-b forbid"`, `extra.list:2`,
		`extra.obj.k:forbid`, `extra.obj:forbid`, `extra:forbid`, `annotations.nope:forbid`,
		`user.groups:"system:authenticated"`, `user.groups:system`, `sourceIPs:10.0.3.17`, `requestObject:configmap`,
		`objectRef.name:"nginx"`, `objectRef.name:nginx`, `objectRef.name:"redis-7"`, `objectRef.name:"redis 7"`,
		`objectRef.resource:deployments AND objectRef.name:"nginx" AND verb:"delete"`,
		`user.username:"alice@example.com"`, `user.username:"Alice@Example.com"`, `user.username:"system:kube-scheduler"`,
		`user.username:"kube-system:replicaset-controller"`, `user.username:"serviceaccount kube-system"`,
		`user.username:system:kube`, `objectRef.name:"app-1.config_3"`, `userAgent:"linux/amd64 kubernetes"`,
		`auditpipe.source:webhook`, `auditpipe.schemaVersion:1`, `level:request`,
		`level:"request"`, `stage:"response complete"`, `stage:"responsecomplete"`, `auditID:"id-00042"`,
		`objectRef.apiGroup:"rbac.authorization.k8s.io"`, `objectRef.apiGroup:"rbac authorization"`,
		`annotations.reason:"allowed by clusterrolebinding"`, `annotations.reason:"by by"`, `userAgent:"kubernetes/abc"`,
		`user.username:"system kube-scheduler" OR objectRef.name:"redis 7"`, `NOT objectRef.name:"nginx"`,
	}
	for _, query := range queries {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		for _, req := range []eventstore.SearchRequest{
			{Query: q, Limit: 37},
			{Query: q, Limit: 23, Cluster: "c2"},
			{Query: q, Limit: 9, From: from, To: to},
		} {
			name := fmt.Sprintf("%s %s %v %v", query, req.Cluster, req.From, req.To)
			require.Equal(t, "native", vlstore.SearchPlan(p.vl.(*vlstore.Store), req), name)
			wantKeys, wantTotal := searchAllPages(t, p.sq, req)
			gotKeys, gotTotal := searchAllPages(t, p.vl, req)
			require.Equal(t, wantTotal, gotTotal, name)
			require.Equal(t, wantKeys, gotKeys, name)
		}
	}
	for _, query := range []string{
		`annotations.authorization.k8s.io/decision:forbid | SELECT count(*) AS n`,
		`annotations.authorization.k8s.io/decision:forbid | SELECT "user.username" AS u, count(*) AS n GROUP BY u ORDER BY n DESC, u LIMIT 3`,
		`objectRef.name:"redis-7" OR extra.list:forbid | SELECT verb, count(*) AS n GROUP BY verb ORDER BY verb`,
	} {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		for _, req := range []eventstore.SearchRequest{{Query: q}, {Query: q, Cluster: "c1", From: from}} {
			require.Equal(t, "native", vlstore.SearchPlan(p.vl.(*vlstore.Store), req), query)
			want, err := p.sq.Search(context.Background(), req)
			require.NoError(t, err, query)
			got, err := p.vl.Search(context.Background(), req)
			require.NoError(t, err, query)
			require.Equal(t, want.Columns, got.Columns, query)
			require.Equal(t, want.Rows, got.Rows, query)
			require.NotEmpty(t, got.Rows, query)
		}
	}
}

// spreadEvents are jsonPathEvents seven seconds apart (about 80 minutes
// for 700), so that time buckets hold several events and several user
// agents; every 37th still has no stageTimestamp.
func spreadEvents(t *testing.T, n int, start time.Time) [][]byte {
	t.Helper()
	out := jsonPathEvents(t, n, start)
	for i, v := range out {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(v, &ev))
		if ts, _ := ev["stageTimestamp"].(string); ts != "" && !strings.HasPrefix(ts, "0001") {
			ev["stageTimestamp"] = start.Add(time.Duration(i) * 7 * time.Second).Add(time.Duration(i%3) * time.Millisecond).Format(time.RFC3339Nano)
		}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		out[i] = b
	}
	return out
}

// TestAnalysesAgainstSQLite: the native analyses (group counts with time
// buckets, response codes, JSON paths, partial ORDER BY whose ties
// SQLite orders, no ORDER BY, LIMIT cutting inside ties) give the SQLite
// store's rows in its order. native: the plan answers without the
// fallback (false: it hands over, errNotExact, and the answer is the
// fallback's).
func TestAnalysesAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := openPair(t, append(localtest.Values(localtest.All(t)), spreadEvents(t, 700, start)...))
	vl := p.vl.(*vlstore.Store)
	from, to := start.Add(13*time.Minute+500*time.Millisecond), start.Add(61*time.Minute+250*time.Millisecond)
	for _, tc := range []struct {
		query  string
		native bool
	}{
		{`* | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC LIMIT 3`, true},
		{`verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC LIMIT 10`, true},
		{`* | SELECT "user.username" AS user, count(*) AS n GROUP BY user ORDER BY n`, true},
		{`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time`, true},
		{`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time DESC LIMIT 17`, true},
		{`* | SELECT histogram(__TIMESTAMP__, interval 5 minute) AS time, count(*) AS n, verb GROUP BY verb, time ORDER BY n DESC LIMIT 30`, true},
		{`* | SELECT userAgent, histogram(__TIMESTAMP__, interval 10 second) AS time, count(*) AS n GROUP BY time, userAgent ORDER BY time DESC, n`, true},
		{`* | SELECT date_trunc('hour', __TIMESTAMP__) AS h, count(*) AS n, count(verb) AS v GROUP BY h ORDER BY h DESC`, true},
		{`* | SELECT date_trunc('minute', cast(__TIMESTAMP__ as timestamp)) AS m, count(*) AS n GROUP BY m ORDER BY n DESC LIMIT 12`, true},
		{`* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY verb, code ORDER BY n DESC`, true},
		{`* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY code, verb ORDER BY n DESC, code`, true},
		{`* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY code, verb ORDER BY n, code DESC`, true},
		{`* | SELECT "responseStatus.code" AS c, count(*) AS n GROUP BY c ORDER BY n DESC, c`, true},
		{`* | SELECT "responseStatus.code" AS c, count(*) AS n GROUP BY c ORDER BY c DESC`, true},
		{`* | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY n`, true},
		{`* | SELECT "objectRef.namespace" AS ns, verb, count(*) AS n GROUP BY ns, verb`, true},
		{`* | SELECT "objectRef.namespace" AS ns, verb, count(*) AS n GROUP BY verb, ns ORDER BY n DESC, verb LIMIT 9`, true},
		{`* | SELECT "objectRef.namespace" AS ns, verb, count(*) AS n GROUP BY verb, ns ORDER BY n DESC LIMIT 9`, true},
		{`* | SELECT verb, count(*) AS n GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 4`, true},
		{`* | SELECT userAgent, count("objectRef.namespace") AS c, count(*) GROUP BY userAgent ORDER BY c DESC`, true},
		{`annotations.authorization.k8s.io/decision:forbid OR annotations.authorization.k8s.io/decision:allow | SELECT "annotations.authorization.k8s.io/decision" AS d, count(*) AS n GROUP BY d ORDER BY n DESC`, true},
		{`annotations.authorization.k8s.io/decision:forbid | SELECT "user.username" AS u, count(*) AS n GROUP BY u ORDER BY n DESC LIMIT 10`, true},
		{`* | SELECT "annotations.authorization.k8s.io/decision" AS d, count(*) AS n GROUP BY d ORDER BY n DESC`, false}, // "" and missing
		{`* | SELECT "annotations.latency" AS l, count(*) GROUP BY l ORDER BY l`, false},                                 // numbers' text
		{`extra.ok:* | SELECT "extra.ok" AS o, count(*) AS n GROUP BY o ORDER BY n DESC`, false},
		{`verb:nope | SELECT verb, count(*) AS n GROUP BY verb ORDER BY n DESC`, true},
		{`* | SELECT verb, count(*) AS n GROUP BY verb HAVING n > 100 ORDER BY n DESC`, true},
		{`* | SELECT verb, count(*) AS n WHERE verb = 'get' OR verb = 'list' GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT verb, count(*) AS n WHERE NOT verb = 'get' AND "objectRef.namespace" IS NOT NULL GROUP BY verb ORDER BY n DESC`, true},
		{`* | SELECT "objectRef.namespace" AS ns, count(*) AS n WHERE NOT ("objectRef.namespace" = 'team-a' OR "responseStatus.code" >= 400) GROUP BY ns ORDER BY ns`, true},
		{`* | SELECT verb, count(*) AS n WHERE "responseStatus.code" IS NULL GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT verb, count(*) AS n WHERE "responseStatus.code" != 404 AND 500 > "responseStatus.code" GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT verb, count_if("responseStatus.code" >= 400) AS errors, count_if(NOT "user.username" IN ('bob', 'system:kube-scheduler')) AS others, count(*) AS n GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT "auditpipe.cluster" AS c, count_if("responseStatus.code" = 403) AS f GROUP BY c ORDER BY c`, true},
		{`* | SELECT verb, count_if(NOT "responseStatus.code" < 300) AS x, count_if("responseStatus.code" <> 200.5) AS y GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT "user.username" AS u, count(*) AS n WHERE "user.username" NOT IN ('bob') GROUP BY u ORDER BY u`, true},
		{`* | SELECT "objectRef.namespace" AS ns, count_if(NOT "objectRef.namespace" = 'Team-B') AS x, count(*) AS n WHERE "objectRef.namespace" = 'Team-B' OR "objectRef.namespace" = 'team-b' OR "objectRef.namespace" IS NULL GROUP BY ns ORDER BY ns`, true},
		{`* | SELECT verb, count_if(NOT "objectRef.namespace" IN ('team-a')) AS x, count_if("objectRef.namespace" NOT IN ('team-a', 'Team-B')) AS y, count_if("objectRef.namespace" != 'team-a') AS z GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT verb, count_if(NOT ("objectRef.namespace" = 'team-a' AND verb = 'get')) AS x, count_if(NOT ("objectRef.namespace" = 'team-a' OR verb = 'get')) AS y GROUP BY verb ORDER BY verb`, true},
		{`* | SELECT verb, count(*) AS n WHERE verb LIKE 'g%' GROUP BY verb ORDER BY verb`, false},
		{`* | SELECT "user.username" AS u, count(*) AS n GROUP BY u HAVING count(*) >= 2 AND n < 140 OR n = 1 ORDER BY n DESC LIMIT 4`, true},
		{`* | SELECT "objectRef.namespace" AS ns, count(1) AS n GROUP BY ns HAVING 150.5 <> n`, true},
		{`* | SELECT "responseStatus.code" AS c, count(*) AS n GROUP BY c HAVING n >= 100 ORDER BY c`, true},
	} {
		q, err := cql.Parse(tc.query)
		require.NoError(t, err, tc.query)
		for _, req := range []eventstore.SearchRequest{{Query: q}, {Query: q, Cluster: "c1", From: from}, {Query: q, From: from, To: to}} {
			name := fmt.Sprintf("%s %s %v %v", tc.query, req.Cluster, req.From, req.To)
			want, err := p.sq.Search(context.Background(), req)
			require.NoError(t, err, name)
			got, err := vl.Search(context.Background(), req)
			require.NoError(t, err, name)
			require.Equal(t, want.Columns, got.Columns, name)
			require.Equal(t, want.Rows, got.Rows, name)
			require.Equal(t, want.Total, got.Total, name)
			nat, err := vlstore.SearchNoFallback(vl, req)
			if tc.native {
				require.NoError(t, err, name)
				require.Equal(t, want.Rows, nat.Rows, name)
			} else if len(want.Rows) > 0 && err == nil {
				t.Fatalf("%s: answered natively, want the fallback", name)
			}
		}
	}
}

// TestSearchLargeTotalAgainstSQLite: native event searches with more
// matches than searchNative reads whole (2,000) take the top-k path;
// pages and totals still equal the SQLite store's, cursors included.
func TestSearchLargeTotalAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := openPair(t, varied(t, 3000, start))
	for _, query := range []string{`*`, `NOT verb:get`, `verb:get OR verb:list OR objectRef.name:"app-1.config_1"`} {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		for _, req := range []eventstore.SearchRequest{
			{Query: q, Limit: 437},
			{Query: q, Limit: 389, From: start.Add(100 * time.Millisecond), To: start.Add(900*time.Millisecond + 500*time.Microsecond)},
		} {
			name := fmt.Sprintf("%s %v", query, req.From)
			require.Equal(t, "native", vlstore.SearchPlan(p.vl.(*vlstore.Store), req), name)
			wantKeys, wantTotal := searchAllPages(t, p.sq, req)
			gotKeys, gotTotal := searchAllPages(t, p.vl, req)
			if query != `verb:get OR verb:list OR objectRef.name:"app-1.config_1"` {
				require.Greater(t, gotTotal, 2000, name)
			}
			require.Equal(t, wantTotal, gotTotal, name)
			require.Equal(t, wantKeys, gotKeys, name)
		}
	}
}

// TestHavingBoundsAgainstSQLite: every HAVING comparison at a count that
// some group has exactly (so that each operator's boundary shows).
func TestHavingBoundsAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := openPair(t, spreadEvents(t, 300, start))
	q, err := cql.Parse(`* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY verb`)
	require.NoError(t, err)
	res, err := p.sq.Search(context.Background(), eventstore.SearchRequest{Query: q})
	require.NoError(t, err)
	require.Greater(t, len(res.Rows), 2)
	n := res.Rows[1][1].(int64)
	for _, op := range []string{"=", "!=", "<>", "<", "<=", ">", ">="} {
		for _, cond := range []string{fmt.Sprintf("n %s %d", op, n), fmt.Sprintf("count(*) %s %d", op, n), fmt.Sprintf("%d %s n", n, op)} {
			query := `* | SELECT verb, count(*) AS n GROUP BY verb HAVING ` + cond + ` ORDER BY verb`
			q, err := cql.Parse(query)
			require.NoError(t, err, query)
			req := eventstore.SearchRequest{Query: q}
			want, err := p.sq.Search(context.Background(), req)
			require.NoError(t, err, query)
			got, err := vlstore.SearchNoFallback(p.vl.(*vlstore.Store), req)
			require.NoError(t, err, query)
			require.Equal(t, want.Rows, got.Rows, query)
		}
	}
}

// TestBucketsOfUnstorableTimes: an event whose stageTimestamp the storage
// cannot keep as its time (1990 here) has no stageTimestamp field, but a
// time bucket in SQLite: an unbounded time-bucket analysis hands over to
// the fallback and answers as SQLite; a bounded one (such events never
// match a range here) stays native.
func TestBucketsOfUnstorableTimes(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	values := spreadEvents(t, 60, start)
	for i := range 2 {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(values[i], &ev))
		ev["stageTimestamp"] = time.Date(1990, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Hour).Format(time.RFC3339Nano)
		ev["auditID"] = fmt.Sprintf("old-%d", i)
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		values = append(values, b)
	}
	p := openPair(t, values)
	vl := p.vl.(*vlstore.Store)
	q, err := cql.Parse(`* | SELECT histogram(__TIMESTAMP__, interval 1 hour) AS h, count(*) AS n GROUP BY h ORDER BY h`)
	require.NoError(t, err)
	for _, req := range []eventstore.SearchRequest{{Query: q}, {Query: q, From: start, To: start.Add(time.Hour)}} {
		want, err := p.sq.Search(context.Background(), req)
		require.NoError(t, err)
		got, err := vl.Search(context.Background(), req)
		require.NoError(t, err)
		require.Equal(t, want.Rows, got.Rows)
		_, err = vlstore.SearchNoFallback(vl, req)
		if req.From.IsZero() {
			require.Contains(t, fmt.Sprint(want.Rows), "1990-01-02 03:00:00")
			require.Error(t, err, "the native plan hands over")
		} else {
			require.NoError(t, err)
		}
	}
}

// fullTextEvents are jsonPathEvents with, here and there, a word only
// under a key longer than the storage's field names (kept in
// auditpipe:rest, an event value full text sees) and a user agent whose
// K is the Kelvin sign (CLS lower-cases it to k).
func fullTextEvents(t *testing.T, n int, start time.Time) [][]byte {
	t.Helper()
	out := jsonPathEvents(t, n, start)
	for i, v := range out {
		var ev map[string]any
		require.NoError(t, json.Unmarshal(v, &ev))
		switch i % 50 {
		case 5:
			ann := ev["annotations"].(map[string]any)
			ann["example.com/"+strings.Repeat("long-", 26)] = "a longkeyword here"
		case 6:
			ev["userAgent"] = "\u212Aubectl/v1.31.0 (linux/amd64)"
		}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		out[i] = b
	}
	return out
}

// TestFullTextAgainstSQLite: full text (words without a key) is native
// and answers as the SQLite store does: case, prefixes, phrases inside one
// value, NOT, with key:value terms, over pages, with a cluster and a time
// range, in analyses. Words that some event has in a field full text must
// not see (auditpipe's own: the cluster, auditpipe.source) or that the storage keeps outside fields (auditpipe:rest) make
// the guard hand the search to the fallback, which answers them right:
// without the guard "webhook" (every event's auditpipe.source, no event
// value) would match everything natively.
func TestFullTextAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	p := openPair(t, append(localtest.Values(localtest.All(t)), fullTextEvents(t, 700, start)...))
	vl := p.vl.(*vlstore.Store)
	from, to := start.Add(40*time.Millisecond+100*time.Microsecond), start.Add(190*time.Millisecond+700*time.Microsecond)
	native := []string{
		`forbid`, `FORBID`, `forb*`, `"forbid allow"`, `"allow forbid"`, `"forbid later"`, `NOT forbid`,
		`forbid AND verb:delete`, `forbid OR nginx`, `nginx`, `NGINX*`, `"redis-7"`, `redis-7`, `"redis 7"`,
		`cluster-admin`, `"clusterrole cluster-admin"`, `configmap`, `"system:authenticated"`, `authenticated`,
		`kubectl`, `"by by"`, `u-3`, `NOT nginx AND NOT forbid`, `"linux amd64"`, `amd64 AND NOT kubectl`,
		`auditpipe.cluster`, // only in the storage's _stream, which "*" does not read
	}
	// Timestamps' words are also auditpipe.receivedAt's, and not in
	// auditpipe:lower (timeShaped): the fallback's prefilter must not
	// look for them there.
	guarded := []string{`webhook`, `c1`, `longkeyword`, `nginx OR webhook`, `2026-11-30T10`, `2026-11-30t1*`, `2026*`}
	requests := func(q *cql.Query) []eventstore.SearchRequest {
		return []eventstore.SearchRequest{
			{Query: q, Limit: 37},
			{Query: q, Limit: 23, Cluster: "c2"},
			{Query: q, Limit: 9, From: from, To: to},
		}
	}
	matched := 0
	for _, query := range append(slices.Clip(native), guarded...) {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		for _, req := range requests(q) {
			name := fmt.Sprintf("%s %s %v %v", query, req.Cluster, req.From, req.To)
			require.Equal(t, "native", vlstore.SearchPlan(vl, req), name)
			_, err := vlstore.SearchNoFallback(vl, req)
			if slices.Contains(guarded, query) && req.Cluster == "" && req.From.IsZero() {
				require.Error(t, err, "%s: the guard hands over", name)
			} else if !slices.Contains(guarded, query) {
				require.NoError(t, err, "%s: answered natively", name)
			}
			wantKeys, wantTotal := searchAllPages(t, p.sq, req)
			gotKeys, gotTotal := searchAllPages(t, p.vl, req)
			require.Equal(t, wantTotal, gotTotal, name)
			require.Equal(t, wantKeys, gotKeys, name)
			matched += gotTotal
		}
	}
	require.NotZero(t, matched)
	for _, query := range []string{
		`forbid | SELECT count(*) AS n`,
		`nginx OR kubectl | SELECT verb, count(*) AS n GROUP BY verb ORDER BY verb`,
	} {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		for _, req := range []eventstore.SearchRequest{{Query: q}, {Query: q, Cluster: "c1", From: from}} {
			want, err := p.sq.Search(context.Background(), req)
			require.NoError(t, err, query)
			got, err := vlstore.SearchNoFallback(vl, req)
			require.NoError(t, err, query)
			require.Equal(t, want.Rows, got.Rows, query)
			require.NotEmpty(t, got.Rows, query)
		}
	}
}

// TestFullTextWithoutLower: a store whose events were written before
// auditpipe:lower (no marker, events already there) is not taken for a
// lowered one at Open, and its full text still answers as SQLite does;
// a new store is marked before its first event, and an emptied one is
// not re-marked while it has events.
func TestFullTextWithoutLower(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	values := fullTextEvents(t, 300, start)
	dir := t.TempDir()
	path := filepath.Join(dir, "vlogs")
	vl, err := vlstore.Open(path, eventstore.Options{}, vlstore.Config{})
	require.NoError(t, err)
	require.True(t, vlstore.Lowered(vl), "a new store")
	require.FileExists(t, filepath.Join(path, vlstore.LowerMarker))
	_, err = vl.Write(context.Background(), values)
	require.NoError(t, err)
	require.NoError(t, vl.Close())

	require.NoError(t, os.Remove(filepath.Join(path, vlstore.LowerMarker)))
	vl, err = vlstore.Open(path, eventstore.Options{}, vlstore.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, vl.Close()) })
	require.False(t, vlstore.Lowered(vl), "events and no marker: written before auditpipe:lower")
	require.NoFileExists(t, filepath.Join(path, vlstore.LowerMarker))

	sq, err := local.Open(filepath.Join(dir, "ref.db"), local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sq.Close()) })
	_, err = sq.Write(context.Background(), values)
	require.NoError(t, err)
	for _, query := range []string{`forbid`, `FORB*`, `kubectl`, `"forbid allow"`, `NOT nginx`} {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		req := eventstore.SearchRequest{Query: q, Limit: 50}
		_, err = vlstore.SearchNoFallback(vl, req)
		require.NoError(t, err, query)
		wantKeys, wantTotal := searchAllPages(t, sq, req)
		gotKeys, gotTotal := searchAllPages(t, vl, req)
		require.Equal(t, wantTotal, gotTotal, query)
		require.Equal(t, wantKeys, gotKeys, query)
	}
}
