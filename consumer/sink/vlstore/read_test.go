package vlstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// varied returns n events over three clusters with a spread of verbs,
// users, namespaces, codes and names (mixed case, CLS delimiters, '-',
// '.', '_'); three events share each millisecond (at different
// microseconds, so the storage's nanosecond order differs from the
// millisecond-then-identity order), and every 37th has no
// stageTimestamp.
func varied(tb testing.TB, n int, start time.Time) [][]byte {
	tb.Helper()
	verbs := []string{"get", "list", "update", "delete", "create", "patch", "watch"}
	users := []string{"system:serviceaccount:kube-system:replicaset-controller", "Alice@Example.com", "bob", "system:kube-scheduler", "deploy-bot_2"}
	namespaces := []string{"default", "kube-system", "team-a", "Team-B", ""}
	codes := []int32{200, 201, 403, 404, 409, 500, 0}
	resources := []string{"pods", "secrets", "configmaps", "clusterrolebindings", "deployments"}
	out := make([][]byte, n)
	for i := range out {
		var ev schemas.ProcessedEvent
		ts := start.Add(time.Duration(i/3)*time.Millisecond + time.Duration(i%3)*250*time.Microsecond)
		require.NoError(tb, json.Unmarshal(eventgen.Event(fmt.Sprintf("c%d", (i*7)%3), fmt.Sprintf("id-%05d", n-i), 600, ts), &ev))
		ev.Verb = verbs[i%len(verbs)]
		ev.User.Username = users[(i/2)%len(users)]
		ev.ObjectRef.Namespace = namespaces[(i/3)%len(namespaces)]
		ev.ObjectRef.Resource = resources[(i/5)%len(resources)]
		ev.ObjectRef.Name = fmt.Sprintf("App-%d.config_%d", i%50, i%7)
		if c := codes[i%len(codes)]; c != 0 {
			ev.ResponseStatus = &schemas.Status{Code: c}
			if c == 403 {
				ev.ResponseStatus.Message = "Forbidden: cannot " + ev.Verb + " " + ev.ObjectRef.Resource
			}
		} else {
			ev.ResponseStatus = nil
		}
		if i%4 == 1 {
			ev.UserAgent = "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/abc"
		}
		if i%37 == 5 {
			ev.StageTimestamp = time.Time{}
		}
		b, err := json.Marshal(ev)
		require.NoError(tb, err)
		out[i] = b
	}
	return out
}

// pair is the same events in the VictoriaLogs store and in the SQLite
// store, the reference.
type pair struct {
	vl, sq eventstore.Store
}

func openPair(t *testing.T, values [][]byte) pair {
	t.Helper()
	dir := t.TempDir()
	vl := open(t, dir, eventstore.Options{})
	t.Cleanup(func() { require.NoError(t, vl.Close()) })
	sq, err := local.Open(filepath.Join(dir, "ref.db"), local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sq.Close()) })
	ctx := context.Background()
	for chunk := range slices.Chunk(values, 500) {
		r1, err := vl.Write(ctx, chunk)
		require.NoError(t, err)
		r2, err := sq.Write(ctx, chunk)
		require.NoError(t, err)
		require.Equal(t, r2.Inserted, r1.Inserted)
		require.Zero(t, r1.Invalid)
	}
	return pair{vl: vl, sq: sq}
}

func TestQueryAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	values := append(localtest.Values(localtest.All(t)), varied(t, 1500, start)...)
	p := openPair(t, values)
	from, to := start.Add(100*time.Millisecond+100*time.Microsecond), start.Add(300*time.Millisecond+700*time.Microsecond)
	for _, q := range []eventstore.Query{
		{}, {Limit: 1}, {Limit: 7}, {Limit: eventstore.MaxLimit},
		{Cluster: "c1", Limit: 13}, {Cluster: "c2", Limit: eventstore.MaxLimit}, {Cluster: "nope"},
		{Verb: "delete", Limit: 50}, {User: "bob", Limit: 1000}, {User: "Alice@Example.com", Namespace: "Team-B"},
		{Namespace: "team-b"}, {Resource: "secrets", Cluster: "c0", Limit: 3},
		{From: from, To: to, Limit: 1000}, {From: from, Limit: 17}, {To: to, Limit: 17}, {From: to, To: from},
		{Text: "kube-system", Limit: 1000}, {Text: "forbidden", Limit: 20}, {Text: "app-1*", Limit: 1000},
		{Text: `"cannot delete secrets"`, Limit: 1000}, {Text: "CONFIG_3", Limit: 1000}, {Text: "kube", Limit: 1000},
		{Text: "linux/amd64 kubernetes", Verb: "get", Limit: 1000}, {Text: "403", From: from, Limit: 1000},
		{Text: "requestReceivedTimestamp"}, {Text: " ; "},
	} {
		name := fmt.Sprintf("%+v", q)
		want, err := p.sq.Query(context.Background(), q)
		require.NoError(t, err, name)
		got, err := p.vl.Query(context.Background(), q)
		require.NoError(t, err, name)
		require.Equal(t, want.Total, got.Total, name)
		require.Equal(t, localtest.Keys(t, want.Events), localtest.Keys(t, got.Events), name)
	}
}

// TestQueryTotalOnALargerStore: the total is the storage's count, the
// page the newest, on 5,000 events of one cluster among others.
func TestQueryTotalOnALargerStore(t *testing.T) {
	st := open(t, t.TempDir(), eventstore.Options{})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	ctx := context.Background()
	start := time.Now().Add(-time.Hour)
	var newest string
	for b := range 10 {
		values := make([][]byte, 0, 600)
		for i := range 500 {
			n := b*500 + i
			values = append(values, eventgen.Event("bench", fmt.Sprintf("e-%05d", n), 800, start.Add(time.Duration(n)*time.Millisecond)))
			newest = fmt.Sprintf("e-%05d", n)
			if i%5 == 0 {
				values = append(values, eventgen.Event("other", fmt.Sprintf("o-%05d", n), 800, start.Add(time.Duration(n)*time.Millisecond)))
			}
		}
		_, err := st.Write(ctx, values)
		require.NoError(t, err)
	}
	res, err := st.Query(ctx, eventstore.Query{Cluster: "bench", Limit: 1})
	require.NoError(t, err)
	require.Equal(t, 5000, res.Total)
	require.Equal(t, newest, localtest.KeyOf(t, res.Events[0]).AuditID)
	res, err = st.Query(ctx, eventstore.Query{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, 6000, res.Total)
}

// searchAllPages follows the cursors of an event search.
func searchAllPages(t *testing.T, st eventstore.Store, req eventstore.SearchRequest) (keys []localtest.Key, total int) {
	t.Helper()
	keys = []localtest.Key{}
	for range 1000 {
		res, err := st.Search(context.Background(), req)
		require.NoError(t, err)
		keys = append(keys, localtest.Keys(t, res.Events)...)
		total = res.Total
		if res.Cursor == "" {
			return keys, total
		}
		req.Cursor = res.Cursor
	}
	t.Fatal("more than 1000 pages")
	return nil, 0
}

// TestSearchAgainstSQLite: CLS queries, with the request's cluster and
// time range, over pages, and analyses, answer as the SQLite store does.
func TestSearchAgainstSQLite(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	values := append(localtest.Values(localtest.All(t)), varied(t, 900, start)...)
	p := openPair(t, values)
	from, to := start.Add(100*time.Millisecond+100*time.Microsecond), start.Add(200*time.Millisecond+700*time.Microsecond)
	queries := []string{
		`*`, `verb:DELETE`, `verb:(get OR list) AND objectRef.resource:pods`, `user.username:kube-system`,
		`user.username:"alice@example.com"`, `user.username:alice*`, `objectRef.name:app-1*`, `objectRef.name:config_3`,
		`objectRef.namespace:team-b`, `NOT objectRef.namespace:*`, `objectRef.namespace:""`, `responseStatus.code>=400`,
		`responseStatus.code>=400 AND NOT responseStatus.code=404`, `NOT responseStatus.code:>=300`, `responseStatus.code:*`,
		`forbidden`, `"cannot delete"`, `kube*`, `amd64 AND verb:watch`, `objectRef.resource:cluster*bindings`,
		`auditpipe.cluster:c1 OR auditpipe.cluster:c2`, `auditID:id-00042`, `userAgent:kubernetes`, `app-7.config_0`,
		`verb:get OR forbidden`, `NOT verb:get AND NOT verb:list`, `__TIMESTAMP__>=1764496800100`,
		`stageTimestamp:0001*`, `annotations.authorization.k8s.io/decision:allow`,
		`responseStatus.code:403`, `responseStatus.code<201`, `responseStatus.code>200.5 AND responseStatus.code<=404`,
		`NOT responseStatus.code=403`, `responseStatus.code:40*`, `verb:get AND responseStatus.code>=400`,
	}
	for _, query := range queries {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		// Odd page sizes so that pages end inside runs of equal times.
		// Under the race detector (make test) pages are five times
		// larger: still several per query, a fifth of the fallback's
		// reloads.
		page := 1
		if raceDetector {
			page = 5
		}
		for _, req := range []eventstore.SearchRequest{
			{Query: q, Limit: 41 * page},
			{Query: q, Limit: 29 * page, Cluster: "c2"},
			{Query: q, Limit: 11 * page, From: from, To: to},
		} {
			name := fmt.Sprintf("%s %s %v %v", query, req.Cluster, req.From, req.To)
			wantKeys, wantTotal := searchAllPages(t, p.sq, req)
			gotKeys, gotTotal := searchAllPages(t, p.vl, req)
			require.Equal(t, wantTotal, gotTotal, name)
			require.Equal(t, wantKeys, gotKeys, name)
		}
	}
	for _, query := range []string{
		`* | SELECT count(*) AS n`,
		`verb:get OR user.username:bob | SELECT count(*)`,
		`verb:get | SELECT count(*) AS n LIMIT 5`,
		`forbidden | SELECT count(*) AS n`,
		`* | SELECT "objectRef.namespace" AS ns, verb, count(*) AS n GROUP BY ns, verb ORDER BY n DESC, ns, verb LIMIT 7`,
		`verb:get OR verb:list | SELECT count(*) AS n, "user.username" GROUP BY "user.username" ORDER BY "user.username" DESC`,
		`* | SELECT "objectRef.namespace", count(*) GROUP BY "objectRef.namespace" ORDER BY "objectRef.namespace" DESC`,
		`* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY n DESC, verb`,
		`verb:delete | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns`,
		`* | SELECT "auditpipe.cluster" AS c, count_if("responseStatus.code" = 403) AS f GROUP BY c ORDER BY c`,
		`forbidden | SELECT "user.username" AS u, count(*) AS n GROUP BY u ORDER BY n DESC, u LIMIT 3`,
	} {
		q, err := cql.Parse(query)
		require.NoError(t, err, query)
		for _, req := range []eventstore.SearchRequest{{Query: q}, {Query: q, Cluster: "c1", From: from}} {
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

// TestSearchCursorAcrossWrites: a cursor returned before more events were
// written continues after the same event.
func TestSearchCursorAcrossWrites(t *testing.T) {
	start := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	values := varied(t, 300, start)
	p := openPair(t, values[:200])
	q, err := cql.Parse("*")
	require.NoError(t, err)
	first, err := p.vl.Search(context.Background(), eventstore.SearchRequest{Query: q, Limit: 50})
	require.NoError(t, err)
	_, err = p.vl.Write(context.Background(), values[200:])
	require.NoError(t, err)
	next, err := p.vl.Search(context.Background(), eventstore.SearchRequest{Query: q, Limit: 50, Cursor: first.Cursor})
	require.NoError(t, err)
	all, err := p.vl.Search(context.Background(), eventstore.SearchRequest{Query: q, Limit: eventstore.MaxLimit})
	require.NoError(t, err)
	keys := localtest.Keys(t, all.Events)
	last := localtest.KeyOf(t, first.Events[len(first.Events)-1])
	i := slices.IndexFunc(keys, func(k localtest.Key) bool { return k == last })
	require.GreaterOrEqual(t, i, 0)
	require.Equal(t, keys[i+1:i+51], localtest.Keys(t, next.Events))
	require.Equal(t, 300, all.Total)
}

// TestSearchCursorThroughReusedCopies: copies under one reused auditID
// share the whole keyset but for their order; pages of one walk through
// them, also when other events were written between the pages.
func TestSearchCursorThroughReusedCopies(t *testing.T) {
	e := localtest.GKE(t)[0]
	var values [][]byte
	for i := range 3 {
		values = append(values, localtest.WithHash(t, e, fmt.Sprintf("h%d", i), func(pe *schemas.ProcessedEvent) {
			pe.UserAgent = fmt.Sprintf("agent-%d", i)
		}))
	}
	p := openPair(t, values)
	q, err := cql.Parse("*")
	require.NoError(t, err)
	req := eventstore.SearchRequest{Query: q, Limit: 1}
	var got, want []string
	for _, st := range []eventstore.Store{p.vl, p.sq} {
		req.Cursor = ""
		var agents []string
		for range 3 {
			res, err := st.Search(context.Background(), req)
			require.NoError(t, err)
			require.Len(t, res.Events, 1)
			agents = append(agents, localtest.AsMap(t, res.Events[0])["userAgent"].(string))
			req.Cursor = res.Cursor
			if st == p.vl && len(agents) == 1 {
				// Another event in between: other candidates, other row ids.
				_, err := st.Write(context.Background(), [][]byte{localtest.GKE(t)[1].JSON})
				require.NoError(t, err)
			}
		}
		if st == p.vl {
			got = agents
		} else {
			want = agents
		}
	}
	// The first copy (unmarked) comes first in both; SQLite orders the
	// marked ones by insertion, vlstore by a hash of the event.
	require.Equal(t, want[0], got[0])
	require.ElementsMatch(t, []string{"agent-0", "agent-1", "agent-2"}, got)
}
