// Package storetest is the conformance suite of the eventstore contract:
// the behaviours of the local event store that its users rely on, which a
// new engine must keep (decision 0026, migration plan). Run it from an
// engine's tests with the engine's opener:
//
//	func TestConformance(t *testing.T) { storetest.Run(t, openMyEngine) }
//
// It checks what callers see through eventstore.Store, never how an
// engine stores: idempotent writes (decision 0012), the reused-auditID
// marker and its hook (0012, 0016), the event kept as written (0010),
// field queries and full text, CLS searches with pages and a few `| SQL`
// analyses (0006), retention by age and by size, used bytes, the shared
// metrics, reopening, and concurrent writers. The exhaustive search tests
// (the CLS oracle and the CLS sink differential, sql_test.go) are still
// written against the SQLite engine in consumer/sink/local; step 3 of the
// plan runs them against the next engine.
//
// It is a test helper: import it only from _test.go files.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// Open opens the engine's store in dir, an empty directory the test owns,
// failing tb when it cannot. Opened again with the same dir after Close,
// it must find the same events. The suite closes every store it opens.
type Open func(tb testing.TB, dir string, opts eventstore.Options) eventstore.Store

// Run runs every case of the suite as a subtest of t.
func Run(t *testing.T, open Open) {
	s := suite{open: open}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"WriteIsIdempotent", s.writeIsIdempotent},
		{"WriteCountsInvalidValues", s.writeCountsInvalidValues},
		{"ReusedAuditIDIsKeptAndMarked", s.reusedAuditID},
		{"SameHashIsOneEvent", s.sameHashIsOneEvent},
		{"EventKeptAsWritten", s.eventKeptAsWritten},
		{"QueryFiltersAndOrder", s.queryFilters},
		{"QueryTimeRangeAndLimit", s.queryTimeRangeAndLimit},
		{"QueryFullText", s.queryFullText},
		{"SearchCLSQueries", s.searchCLS},
		{"SearchPagesAndCursor", s.searchPages},
		{"SearchSQL", s.searchSQL},
		{"Clusters", s.clusters},
		{"RetentionByAge", s.retentionByAge},
		{"RetentionBySize", s.retentionBySize},
		{"UsedBytesMetricsAndReopen", s.usedBytesMetricsAndReopen},
		{"ConcurrentWriters", s.concurrentWriters},
	} {
		t.Run(c.name, c.run)
	}
}

type suite struct{ open Open }

// store opens a store in a fresh directory, closed when the test ends.
func (s suite) store(tb testing.TB, opts eventstore.Options) eventstore.Store {
	tb.Helper()
	st := s.open(tb, tb.TempDir(), opts)
	tb.Cleanup(func() { require.NoError(tb, st.Close()) })
	return st
}

// loaded is a store holding the GKE and kind fixtures (62 events).
func (s suite) loaded(tb testing.TB) (eventstore.Store, []localtest.Event) {
	tb.Helper()
	st := s.store(tb, eventstore.Options{})
	events := localtest.All(tb)
	res, err := st.Write(context.Background(), localtest.Values(events))
	require.NoError(tb, err)
	require.Equal(tb, eventstore.WriteResult{Inserted: len(events)}, res)
	return st, events
}

func all(localtest.Event) bool { return true }

func total(tb testing.TB, st eventstore.Store) int {
	tb.Helper()
	res, err := st.Query(context.Background(), eventstore.Query{Limit: 1})
	require.NoError(tb, err)
	return res.Total
}

func search(tb testing.TB, st eventstore.Store, req eventstore.SearchRequest, query string) (eventstore.SearchResult, error) {
	tb.Helper()
	q, err := cql.Parse(query)
	require.NoError(tb, err, query)
	req.Query = q
	return st.Search(context.Background(), req)
}

// searchAll follows the cursors through every page of an event search and
// checks that the pages agree on the total and add up to it.
func searchAll(tb testing.TB, st eventstore.Store, req eventstore.SearchRequest, query string, pageSize int) []localtest.Key {
	tb.Helper()
	req.Limit = pageSize
	out := []localtest.Key{}
	for range 1000 {
		res, err := search(tb, st, req, query)
		require.NoError(tb, err, query)
		require.LessOrEqual(tb, len(res.Events), pageSize)
		out = append(out, localtest.Keys(tb, res.Events)...)
		if res.Cursor == "" {
			require.Equal(tb, res.Total, len(out), "pages do not add up to the total: %s", query)
			return out
		}
		require.Len(tb, res.Events, pageSize, "a page before the last is full: %s", query)
		req.Cursor = res.Cursor
	}
	tb.Fatal("more than 1000 pages")
	return nil
}

func decode(tb testing.TB, b []byte) schemas.ProcessedEvent {
	tb.Helper()
	var pe schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(b, &pe))
	return pe
}

// aged writes n eventgen events of cluster c1, one minute apart from start,
// with auditIDs prefix-00000 on, and returns the auditIDs.
func aged(tb testing.TB, st eventstore.Store, prefix string, n, size int, start time.Time) []string {
	tb.Helper()
	values := make([][]byte, n)
	ids := make([]string, n)
	for i := range values {
		ids[i] = fmt.Sprintf("%s-%05d", prefix, i)
		values[i] = eventgen.Event("c1", ids[i], size, start.Add(time.Duration(i)*time.Minute))
	}
	res, err := st.Write(context.Background(), values)
	require.NoError(tb, err)
	require.Equal(tb, n, res.Inserted)
	return ids
}

// metric is the value of the counter or gauge name, of the sample whose
// labels include the name/value pairs labels.
func metric(tb testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	samples:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue samples
				}
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	tb.Fatalf("no metric %s%v", name, labels)
	return 0
}

// writeIsIdempotent: a Kafka redelivery of a batch, and an apiserver
// retry with other bytes, change nothing (decision 0012).
func (s suite) writeIsIdempotent(t *testing.T) {
	ctx := context.Background()
	st, events := s.loaded(t)
	values := localtest.Values(events)

	res, err := st.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: len(values)}, res)

	// The same event pretty-printed and received later: one event.
	again := events[0].ProcessedEvent
	again.Pipeline.ReceivedAt = again.Pipeline.ReceivedAt.Add(time.Minute)
	retry, err := json.MarshalIndent(again, "", "  ")
	require.NoError(t, err)
	res, err = st.Write(ctx, [][]byte{values[1], retry, retry})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 3}, res)

	got, err := st.Query(ctx, eventstore.Query{Limit: eventstore.MaxLimit})
	require.NoError(t, err)
	require.Equal(t, len(values), got.Total)
	require.Equal(t, localtest.WantKeys(events, all), localtest.Keys(t, got.Events))
}

// writeCountsInvalidValues: values that are no storable event are
// counted, named by index with a reason, and skipped; the rest is stored.
func (s suite) writeCountsInvalidValues(t *testing.T) {
	st := s.store(t, eventstore.Options{})
	good := localtest.GKE(t)
	mutate := func(f func(*schemas.ProcessedEvent)) []byte {
		ev := good[0].ProcessedEvent
		f(&ev)
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		return b
	}
	values := [][]byte{
		good[0].JSON,
		[]byte(`{"kind":"Event"`),
		mutate(func(e *schemas.ProcessedEvent) { e.Pipeline.Cluster = "" }),
		good[1].JSON,
		mutate(func(e *schemas.ProcessedEvent) { e.AuditID = "" }),
		mutate(func(e *schemas.ProcessedEvent) { e.Stage = "" }),
		[]byte(`[1,2,3]`),
		[]byte("{\"auditID\":\"\xff\xfe\"}"), // not UTF-8
		nil,
	}
	res, err := st.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, 2, res.Inserted)
	require.Equal(t, 7, res.Invalid)
	var idx []int
	for _, iv := range res.InvalidValues {
		idx = append(idx, iv.Index)
		require.NotEmpty(t, iv.Reason)
	}
	require.Equal(t, []int{1, 2, 4, 5, 6, 7, 8}, idx)
	require.Contains(t, res.InvalidValues[1].Reason, "auditpipe.cluster")
	require.Contains(t, res.InvalidValues[2].Reason, "auditID")
	require.Contains(t, res.InvalidValues[3].Reason, "stage")

	res, err = st.Write(context.Background(), [][]byte{[]byte("nope")})
	require.NoError(t, err, "only invalid values: nothing to do, no error")
	require.Equal(t, 1, res.Invalid)
	require.Equal(t, 2, total(t, st))
}

// reusedAuditID: a different event under a stored (cluster, auditID,
// stage) is stored too, marked auditpipe.auditIDReused, reported once to
// OnReused, and searchable by the marker (decisions 0012, 0016).
func (s suite) reusedAuditID(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var hooked [][]byte
	st := s.store(t, eventstore.Options{OnReused: func(_ context.Context, events [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		hooked = append(hooked, events...)
	}})
	base := localtest.GKE(t)[0]
	harmless := localtest.WithHash(t, base, strings.Repeat("a", 64), nil)
	malicious := localtest.WithHash(t, base, strings.Repeat("b", 64), func(pe *schemas.ProcessedEvent) {
		pe.Verb = "delete"
		pe.ObjectRef = &schemas.ObjectReference{Resource: "secrets", Namespace: "kube-system", Name: "admin-token", APIVersion: "v1"}
		pe.User.Username = "mallory"
	})

	res, err := st.Write(ctx, [][]byte{harmless, malicious, harmless})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 2, Reused: 1, Duplicates: 1}, res, "the first of the batch is the first stored")
	res, err = st.Write(ctx, [][]byte{malicious, harmless})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 2}, res, "a redelivery changes nothing")

	mu.Lock()
	require.Len(t, hooked, 1, "OnReused once per stored event")
	require.JSONEq(t, string(malicious), string(hooked[0]), "OnReused gets the event as written")
	mu.Unlock()

	got, err := search(t, st, eventstore.SearchRequest{}, "*")
	require.NoError(t, err)
	require.Equal(t, 2, got.Total)
	var first, second []byte
	for _, e := range got.Events {
		if decode(t, e).Pipeline.AuditIDReused {
			second = e
		} else {
			first = e
		}
	}
	require.NotNil(t, first, "the event stored first is not marked")
	require.NotNil(t, second, "the later, different event is marked")
	require.Equal(t, localtest.AsMap(t, harmless), localtest.AsMap(t, first))
	marked := localtest.AsMap(t, malicious)
	marked[schemas.PipelineKey].(map[string]any)["auditIDReused"] = true
	require.Equal(t, marked, localtest.AsMap(t, second), "stored as written, plus the marker")

	found, err := search(t, st, eventstore.SearchRequest{}, "auditpipe.auditIDReused:true")
	require.NoError(t, err)
	require.Equal(t, 1, found.Total)
	require.Equal(t, "mallory", decode(t, found.Events[0]).User.Username)
	found, err = search(t, st, eventstore.SearchRequest{}, "NOT auditpipe.auditIDReused:true")
	require.NoError(t, err)
	require.Equal(t, 1, found.Total)

	// Events without a hash (before 0012) compare by their fields.
	third := localtest.WithHash(t, base, "", func(pe *schemas.ProcessedEvent) { pe.Verb = "patch" })
	res, err = st.Write(ctx, [][]byte{third, third})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 1, Reused: 1, Duplicates: 1}, res)
}

// sameHashIsOneEvent: a replay through another policy changes what the
// pipeline made of an event, not its hash: one event (decision 0012).
func (s suite) sameHashIsOneEvent(t *testing.T) {
	st := s.store(t, eventstore.Options{})
	base := localtest.GKE(t)[0]
	h := strings.Repeat("d", 64)
	first := localtest.WithHash(t, base, h, nil)
	replayed := localtest.WithHash(t, base, h, func(pe *schemas.ProcessedEvent) {
		pe.Level = "Metadata"
		pe.RequestObject, pe.ResponseObject = nil, nil
		pe.Pipeline.ProcessedAt = pe.Pipeline.ProcessedAt.Add(24 * time.Hour)
	})
	res, err := st.Write(context.Background(), [][]byte{first})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 1}, res)
	res, err = st.Write(context.Background(), [][]byte{replayed})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 1}, res)
	got, err := st.Query(context.Background(), eventstore.Query{})
	require.NoError(t, err)
	require.JSONEq(t, string(first), string(got.Events[0]), "the first copy is kept")
}

// eventKeptAsWritten: the API returns the event with every member the
// apiserver sent, also those outside the typed schema (decision 0010).
func (s suite) eventKeptAsWritten(t *testing.T) {
	st := s.store(t, eventstore.Options{})
	raw := localtest.Raw(localtest.Kind(t))
	pretty, err := json.MarshalIndent(json.RawMessage(raw[0].JSON), "", "  ")
	require.NoError(t, err)
	values := append([][]byte{pretty}, localtest.Values(raw[1:])...)
	res, err := st.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, len(raw), res.Inserted)
	written := map[localtest.Key][]byte{}
	for _, e := range raw {
		written[localtest.Key{Cluster: e.Pipeline.Cluster, AuditID: e.AuditID, Stage: e.Stage}] = e.JSON
	}
	got, err := st.Query(context.Background(), eventstore.Query{Limit: eventstore.MaxLimit})
	require.NoError(t, err)
	found, err := search(t, st, eventstore.SearchRequest{Limit: eventstore.MaxLimit}, "*")
	require.NoError(t, err)
	for _, events := range [][]json.RawMessage{got.Events, found.Events} {
		require.Len(t, events, len(raw))
		for _, e := range events {
			require.JSONEq(t, string(written[localtest.KeyOf(t, e)]), string(e))
		}
	}
}

func (s suite) queryFilters(t *testing.T) {
	st, events := s.loaded(t)
	for _, tc := range []struct {
		name  string
		q     eventstore.Query
		match func(localtest.Event) bool
		min   int // guards against a filter that trivially matches nothing
	}{
		{"all", eventstore.Query{}, all, 62},
		{"cluster", eventstore.Query{Cluster: localtest.ClusterKind},
			func(e localtest.Event) bool { return e.Pipeline.Cluster == localtest.ClusterKind }, 37},
		{"verb", eventstore.Query{Verb: "delete"}, func(e localtest.Event) bool { return e.Verb == "delete" }, 8},
		{"user", eventstore.Query{User: "system:serviceaccount:kube-system:replicaset-controller"},
			func(e localtest.Event) bool {
				return e.User.Username == "system:serviceaccount:kube-system:replicaset-controller"
			}, 2},
		{"resource", eventstore.Query{Resource: "pods"},
			func(e localtest.Event) bool { return e.ObjectRef != nil && e.ObjectRef.Resource == "pods" }, 14},
		{"namespace", eventstore.Query{Namespace: "default"},
			func(e localtest.Event) bool { return e.ObjectRef != nil && e.ObjectRef.Namespace == "default" }, 18},
		{"combined", eventstore.Query{Cluster: localtest.ClusterGKE, Verb: "create", Resource: "clusterroles"},
			func(e localtest.Event) bool {
				return e.Pipeline.Cluster == localtest.ClusterGKE && e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Resource == "clusterroles"
			}, 1},
		{"no match", eventstore.Query{Cluster: "nope"}, func(localtest.Event) bool { return false }, 0},
		{"exact, case-sensitive", eventstore.Query{Verb: "DELETE"}, func(localtest.Event) bool { return false }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Query(context.Background(), tc.q)
			require.NoError(t, err)
			w := localtest.WantKeys(events, tc.match)
			require.GreaterOrEqual(t, len(w), tc.min)
			require.Equal(t, len(w), got.Total)
			require.Equal(t, w, localtest.Keys(t, got.Events), "events, in order")
			require.NotNil(t, got.Events)
		})
	}
}

func (s suite) queryTimeRangeAndLimit(t *testing.T) {
	ctx := context.Background()
	st, events := s.loaded(t)
	// Two GKE events' times: From is in, To is out (half-open).
	from := time.Date(2020, 1, 9, 0, 18, 50, 683_000_000, time.UTC)
	to := time.Date(2020, 1, 10, 22, 24, 5, 196_000_000, time.UTC)
	got, err := st.Query(ctx, eventstore.Query{From: from.In(time.FixedZone("CST", 8*3600)), To: to})
	require.NoError(t, err)
	w := localtest.WantKeys(events, func(e localtest.Event) bool {
		ms := e.StageTimestamp.UnixMilli()
		return ms >= from.UnixMilli() && ms < to.UnixMilli()
	})
	require.Len(t, w, 4)
	require.Equal(t, w, localtest.Keys(t, got.Events))
	got, err = st.Query(ctx, eventstore.Query{From: to, To: from})
	require.NoError(t, err)
	require.Zero(t, got.Total, "empty window")
	got, err = st.Query(ctx, eventstore.Query{From: from})
	require.NoError(t, err)
	w = localtest.WantKeys(events, func(e localtest.Event) bool { return !e.StageTimestamp.Before(from) })
	require.Len(t, w, 19)
	require.Equal(t, w, localtest.Keys(t, got.Events), "from only")
	got, err = st.Query(ctx, eventstore.Query{To: from})
	require.NoError(t, err)
	w = localtest.WantKeys(events, func(e localtest.Event) bool { return e.StageTimestamp.Before(from) })
	require.Len(t, w, 43)
	require.Equal(t, w, localtest.Keys(t, got.Events), "to only")

	every := localtest.WantKeys(events, all)
	got, err = st.Query(ctx, eventstore.Query{Limit: 5})
	require.NoError(t, err)
	require.Equal(t, len(every), got.Total, "total counts every match, not the page")
	require.Equal(t, every[:5], localtest.Keys(t, got.Events))
	got, err = st.Query(ctx, eventstore.Query{Cluster: localtest.ClusterKind, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, 37, got.Total)
	require.Len(t, got.Events, 1)
	// The kind events share timestamps to the second: the tie-breaks make
	// two identical queries agree.
	again, err := st.Query(ctx, eventstore.Query{Cluster: localtest.ClusterKind, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, got.Events, again.Events)
	for _, limit := range []int{0, -1, eventstore.MaxLimit + 1} {
		got, err = st.Query(ctx, eventstore.Query{Limit: limit})
		require.NoError(t, err, "limit %d", limit)
		require.Len(t, got.Events, min(len(every), eventstore.DefaultLimit), "limit %d", limit)
	}
}

// queryFullText: Query.Text matches CLS's words of every value,
// case-insensitively; keys are not indexed.
func (s suite) queryFullText(t *testing.T) {
	st, events := s.loaded(t)
	contains := func(sub string) func(localtest.Event) bool {
		re := regexp.MustCompile(`(?i)(^|[^\pL\pN])` + regexp.QuoteMeta(sub) + `($|[^\pL\pN])`)
		return func(e localtest.Event) bool { return re.Match(e.JSON) }
	}
	for _, tc := range []struct {
		text  string
		verb  string // Query.Verb with the text
		match func(localtest.Event) bool
		min   int
	}{
		{"evil-user-binding", "", contains("evil-user-binding"), 1},         // a name in the body
		{"replicaset-controller", "", contains("replicaset-controller"), 2}, // a word of a user name
		{"FORBIDDEN", "", contains("forbidden"), 10},                        // case-insensitive
		{"forbidden ns1", "", func(e localtest.Event) bool { return contains("forbidden")(e) && contains("ns1")(e) }, 1},
		{`"cannot list pods"`, "", contains("cannot list pods"), 1},
		{"replicaset-contr*", "", contains("replicaset-controller"), 2},
		{"403", "", func(e localtest.Event) bool { return code(e) == 403 }, 1},
		{"forbidden", "list", func(e localtest.Event) bool { return contains("forbidden")(e) && e.Verb == "list" }, 1},
		{"zzzz-not-there", "", func(localtest.Event) bool { return false }, 0},
		{"requestReceivedTimestamp", "", func(localtest.Event) bool { return false }, 0}, // keys are not indexed
		{`NOT ( -"`, "", func(localtest.Event) bool { return false }, 0},                 // searched for, never interpreted
	} {
		got, err := st.Query(context.Background(), eventstore.Query{Text: tc.text, Verb: tc.verb, Limit: eventstore.MaxLimit})
		require.NoError(t, err, tc.text)
		w := localtest.WantKeys(events, tc.match)
		require.GreaterOrEqual(t, len(w), tc.min, tc.text)
		require.Equal(t, w, localtest.Keys(t, got.Events), tc.text)
		require.Equal(t, len(w), got.Total, tc.text)
	}
}

func code(e localtest.Event) int {
	if e.ResponseStatus == nil {
		return 0
	}
	return int(e.ResponseStatus.Code)
}

func objectRef(e localtest.Event) schemas.ObjectReference {
	if e.ObjectRef == nil {
		return schemas.ObjectReference{}
	}
	return *e.ObjectRef
}

// searchCLS runs CLS queries, one per rule that differs from a naive
// engine's (case, words that keep '-' and '.', ranges, NOT and missing
// fields, wildcards), each across pages of 7.
func (s suite) searchCLS(t *testing.T) {
	st, events := s.loaded(t)
	// CLS's words: split at its delimiters, case-insensitive.
	words := func(v string) []string { return strings.FieldsFunc(strings.ToLower(v), cql.IsDelimiter) }
	for _, tc := range []struct {
		query string
		match func(localtest.Event) bool
		min   int
	}{
		{`verb:DELETE`, func(e localtest.Event) bool { return e.Verb == "delete" }, 8},
		{`objectRef.resource:ClusterRoleBindings`, func(e localtest.Event) bool { return objectRef(e).Resource == "clusterrolebindings" }, 2},
		{`objectRef.apiGroup:rbac.authorization.k8s.io`, func(e localtest.Event) bool { return objectRef(e).APIGroup == "rbac.authorization.k8s.io" }, 5},
		{`user.username:kube-system`, func(e localtest.Event) bool { return slices.Contains(words(e.User.Username), "kube-system") }, 2},
		{`responseStatus.code>=400 AND NOT responseStatus.code=404`, func(e localtest.Event) bool { return code(e) >= 400 && code(e) != 404 }, 5},
		{`NOT responseStatus.code:>=300`, func(e localtest.Event) bool { return code(e) < 300 }, 20},
		{`verb:(get OR list) AND objectRef.resource:pods`, func(e localtest.Event) bool {
			return (e.Verb == "get" || e.Verb == "list") && objectRef(e).Resource == "pods"
		}, 5},
		{`objectRef.resource:cluster*bindings`, func(e localtest.Event) bool {
			r := objectRef(e).Resource
			return strings.HasPrefix(r, "cluster") && strings.HasSuffix(r, "bindings")
		}, 2},
		{`auditpipe.cluster:` + localtest.ClusterGKE, func(e localtest.Event) bool { return e.Pipeline.Cluster == localtest.ClusterGKE }, 25},
	} {
		w := localtest.WantKeys(events, tc.match)
		require.GreaterOrEqual(t, len(w), tc.min, tc.query)
		require.Equal(t, w, searchAll(t, st, eventstore.SearchRequest{}, tc.query, 7), tc.query)
	}
}

// searchPages: pages follow the result order, even among events that
// share a timestamp or have none; cursors are refused where they make no
// sense.
func (s suite) searchPages(t *testing.T) {
	st, events := s.loaded(t)
	every := localtest.WantKeys(events, all)
	for _, size := range []int{1, 7, 100} {
		require.Equal(t, every, searchAll(t, st, eventstore.SearchRequest{}, "*", size), "page size %d", size)
	}

	// Events without a stageTimestamp sort last, in identity order.
	base := localtest.GKE(t)[0].ProcessedEvent
	var values [][]byte
	var tail []localtest.Key
	for i := range 5 {
		ev := base
		ev.AuditID = fmt.Sprintf("no-time-%02d", i)
		ev.StageTimestamp = time.Time{}
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		values = append(values, b)
		tail = append(tail, localtest.Key{Cluster: ev.Pipeline.Cluster, AuditID: ev.AuditID, Stage: ev.Stage})
	}
	_, err := st.Write(context.Background(), values)
	require.NoError(t, err)
	for _, size := range []int{2, 9} {
		require.Equal(t, append(slices.Clone(every), tail...), searchAll(t, st, eventstore.SearchRequest{}, "*", size), "page size %d", size)
	}

	// Cluster and the half-open time range of the request: from and to
	// are two GKE events' times, the first in, the second out.
	from := time.Date(2020, 1, 9, 0, 18, 50, 683_000_000, time.UTC)
	to := time.Date(2020, 1, 10, 22, 24, 5, 196_000_000, time.UTC)
	for _, cluster := range []string{localtest.ClusterGKE, localtest.ClusterKind} {
		w := localtest.WantKeys(events, func(e localtest.Event) bool {
			return e.Pipeline.Cluster == cluster && !e.StageTimestamp.Before(from) && e.StageTimestamp.Before(to)
		})
		require.Equal(t, w, searchAll(t, st, eventstore.SearchRequest{Cluster: cluster, From: from, To: to}, "*", 3), cluster)
		if cluster == localtest.ClusterGKE {
			require.Len(t, w, 4)
		}
	}

	var ie *eventstore.InvalidSearchError
	_, err = search(t, st, eventstore.SearchRequest{Cursor: "garbage"}, "*")
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "cursor", ie.Param)
	res, err := search(t, st, eventstore.SearchRequest{Limit: 1}, "*")
	require.NoError(t, err)
	require.NotEmpty(t, res.Cursor)
	_, err = search(t, st, eventstore.SearchRequest{Cursor: res.Cursor}, "* | SELECT count(*)")
	require.ErrorAs(t, err, &ie, "an analysis has no pages")
	require.Equal(t, "cursor", ie.Param)
}

// searchSQL: the analysis part's answers: int64 counts, strings, NULL for
// a field that was not sent (grouped, and sorted last), the filter before
// the pipe applied first; a statement the engine rejects is the caller's
// error.
func (s suite) searchSQL(t *testing.T) {
	st, events := s.loaded(t)
	rows := func(q string) eventstore.SearchResult {
		t.Helper()
		res, err := search(t, st, eventstore.SearchRequest{}, q)
		require.NoError(t, err, q)
		return res
	}

	res := rows(`* | SELECT count(*) AS n`)
	require.Equal(t, []string{"n"}, res.Columns)
	require.Equal(t, [][]any{{int64(len(events))}}, res.Rows)

	byVerb := map[string]int64{}
	for _, e := range events {
		byVerb[e.Verb]++
	}
	var wantVerbs [][]any
	for _, v := range slices.Sorted(func(yield func(string) bool) {
		for v := range byVerb {
			if !yield(v) {
				return
			}
		}
	}) {
		wantVerbs = append(wantVerbs, []any{v, byVerb[v]})
	}
	slices.SortStableFunc(wantVerbs, func(a, b []any) int { return int(b[1].(int64) - a[1].(int64)) })
	require.Equal(t, wantVerbs, rows(`* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY n DESC, verb`).Rows)

	byNS := map[string]int64{}
	var nulls int64
	for _, e := range events {
		if e.Verb != "delete" {
			continue
		}
		if ns := objectRef(e).Namespace; ns != "" {
			byNS[ns]++
		} else {
			nulls++
		}
	}
	var wantNS [][]any
	for _, ns := range slices.Sorted(func(yield func(string) bool) {
		for ns := range byNS {
			if !yield(ns) {
				return
			}
		}
	}) {
		wantNS = append(wantNS, []any{ns, byNS[ns]})
	}
	require.NotZero(t, nulls, "the fixtures have deletes without a namespace")
	wantNS = append(wantNS, []any{nil, nulls})
	require.Equal(t, wantNS, rows(`verb:delete | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns`).Rows)

	var forbidden int64
	for _, e := range events {
		if code(e) == 403 {
			forbidden++
		}
	}
	require.Equal(t, [][]any{{forbidden}}, rows(`* | SELECT count_if("responseStatus.code" = 403)`).Rows)

	_, err := search(t, st, eventstore.SearchRequest{}, `* | SELECT verb WHERE count(*) > 1`)
	var ie *eventstore.InvalidSearchError
	var ce *cql.Error
	require.True(t, errors.As(err, &ie) || errors.As(err, &ce), "an aggregate in WHERE is the caller's error, got %v", err)
}

func (s suite) clusters(t *testing.T) {
	st := s.store(t, eventstore.Options{})
	got, err := st.Clusters(context.Background())
	require.NoError(t, err)
	require.Empty(t, got)
	now := time.Now()
	var values [][]byte
	for i, c := range []string{"prod-b", "dev", "prod-a", "dev", "prod-b"} {
		values = append(values, eventgen.Event(c, fmt.Sprintf("id-%d", i), 800, now))
	}
	_, err = st.Write(context.Background(), values)
	require.NoError(t, err)
	got, err = st.Clusters(context.Background())
	require.NoError(t, err)
	require.Equal(t, []string{"dev", "prod-a", "prod-b"}, got)
}

// prune runs retention steps at now until there is nothing more to do.
func prune(tb testing.TB, st eventstore.Store, r eventstore.Retention, now time.Time) (deleted int) {
	tb.Helper()
	for range 10000 {
		n, more, err := st.PruneStep(context.Background(), r, now)
		require.NoError(tb, err)
		deleted += n
		if !more {
			return deleted
		}
	}
	tb.Fatal("retention never finished")
	return 0
}

// retentionByAge: events older than MaxAge go, newer ones stay, and the
// pruned counter says how many. Ages are days apart, so an engine that
// drops whole days passes too.
func (s suite) retentionByAge(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := s.store(t, eventstore.Options{Registerer: reg})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	old := aged(t, st, "old", 30, 800, now.Add(-10*24*time.Hour))
	aged(t, st, "new", 20, 800, now.Add(-time.Hour))
	r := eventstore.Retention{MaxAge: 48 * time.Hour, StepRows: 7}
	require.Equal(t, 30, prune(t, st, r, now))
	require.Equal(t, 20, total(t, st))
	require.Equal(t, 30.0, metric(t, reg, "auditpipe_localstore_pruned_events_total", "reason", "age"))
	found, err := search(t, st, eventstore.SearchRequest{}, "auditID:"+old[3])
	require.NoError(t, err)
	require.Zero(t, found.Total, "a pruned event is not found by its field")
	res, err := st.Query(context.Background(), eventstore.Query{Text: old[3]})
	require.NoError(t, err)
	require.Zero(t, res.Total, "nor by a word")
	res, err = st.Query(context.Background(), eventstore.Query{Text: "new-00003"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Total, "a kept event is still found by a word")
	require.Zero(t, prune(t, st, r, now), "nothing more to do")
}

// retentionBySize: over MaxBytes the oldest events go until the used bytes
// are within it; the newest stay.
func (s suite) retentionBySize(t *testing.T) {
	reg := prometheus.NewRegistry()
	st := s.store(t, eventstore.Options{Registerer: reg})
	now := time.Now()
	var oldest, newest string
	for d := range 4 {
		ids := aged(t, st, fmt.Sprintf("day%d", d), 100, 3000, now.Add(time.Duration(d-3)*24*time.Hour-2*time.Hour))
		if d == 0 {
			oldest = ids[0]
		}
		newest = ids[len(ids)-1]
	}
	used, err := st.UsedBytes(context.Background())
	require.NoError(t, err)
	limit := used / 2
	deleted := prune(t, st, eventstore.Retention{MaxBytes: limit}, now)
	after, err := st.UsedBytes(context.Background())
	require.NoError(t, err)
	require.LessOrEqual(t, after, limit)
	left := total(t, st)
	require.Equal(t, 400, left+deleted)
	require.Greater(t, left, 0, "not everything")
	require.Less(t, left, 400)
	require.Equal(t, float64(deleted), metric(t, reg, "auditpipe_localstore_pruned_events_total", "reason", "size"))
	res, err := st.Query(context.Background(), eventstore.Query{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, newest, localtest.KeyOf(t, res.Events[0]).AuditID, "the newest event stays")
	res2, err := search(t, st, eventstore.SearchRequest{}, "auditID:"+oldest)
	require.NoError(t, err)
	require.Zero(t, res2.Total, "the oldest event went first")
}

// usedBytesMetricsAndReopen: used bytes grow with the data and are
// reported; the shared metrics count outcomes; Close is safe twice and
// unregisters, and a store reopened on the same registry holds the same
// events.
func (s suite) usedBytesMetricsAndReopen(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	st := s.open(t, dir, eventstore.Options{Registerer: reg})
	closed := false
	t.Cleanup(func() {
		if !closed {
			require.NoError(t, st.Close())
		}
	})
	start := time.Now().Add(-time.Hour)
	aged(t, st, "a", 100, 2000, start)
	u1, err := st.UsedBytes(ctx)
	require.NoError(t, err)
	require.Positive(t, u1)
	aged(t, st, "b", 400, 2000, time.Now().Add(-time.Hour))
	u2, err := st.UsedBytes(ctx)
	require.NoError(t, err)
	require.Greater(t, u2, u1, "used bytes grow with the events")
	require.Equal(t, float64(u2), metric(t, reg, "auditpipe_localstore_used_bytes"))

	v := eventgen.Event("c1", "a-00000", 2000, start) // the first of the first batch
	res, err := st.Write(ctx, [][]byte{eventgen.Event("c1", "c-00000", 2000, time.Now()), v, []byte("x")})
	require.NoError(t, err)
	require.Equal(t, []int{1, 1, 1}, []int{res.Inserted, res.Duplicates, res.Invalid})
	require.Equal(t, 501.0, metric(t, reg, "auditpipe_localstore_events_total", "outcome", "inserted"))
	require.Equal(t, 1.0, metric(t, reg, "auditpipe_localstore_events_total", "outcome", "duplicate"))
	require.Equal(t, 1.0, metric(t, reg, "auditpipe_localstore_events_total", "outcome", "invalid"))
	require.Equal(t, 0.0, metric(t, reg, "auditpipe_localstore_auditid_reused_total"))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	require.NoError(t, st.Close())
	require.NoError(t, st.Close(), "Close is safe twice")
	closed = true
	st = s.open(t, dir, eventstore.Options{Registerer: reg})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	require.Equal(t, 501, total(t, st))
	found, err := search(t, st, eventstore.SearchRequest{}, "auditID:b-00042")
	require.NoError(t, err)
	require.Equal(t, 1, found.Total, "the search index survives too")
	res, err = st.Write(ctx, [][]byte{v})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 1}, res, "identities survive")
}

// concurrentWriters: Write calls from several goroutines (one per
// partition), overlapping in content, with searches running: every event
// is stored once and the counts add up.
func (s suite) concurrentWriters(t *testing.T) {
	st := s.store(t, eventstore.Options{})
	ctx := context.Background()
	const writers, batches, size = 4, 5, 20
	now := time.Now()
	batch := func(w, b int) [][]byte {
		values := make([][]byte, size)
		for i := range values {
			// Writer w's batch b repeats the second half of writer
			// w-1's batch b: the same events, bytes and all.
			owner, k := w, i
			if i < size/2 && w > 0 {
				owner, k = w-1, i+size/2
			}
			ts := now.Add(time.Duration(owner*1000+b*100+k) * time.Millisecond)
			values[i] = eventgen.Event("c1", fmt.Sprintf("w%d-b%d-%02d", owner, b, k), 1000, ts)
		}
		return values
	}
	query, err := cql.Parse("verb:update")
	require.NoError(t, err)
	var wg sync.WaitGroup
	results := make([]eventstore.WriteResult, writers*batches)
	errs := make([]error, writers*batches+1)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := st.Search(ctx, eventstore.SearchRequest{Query: query, Limit: 5}); err != nil {
				errs[writers*batches] = err
				return
			}
		}
	}()
	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			for b := range batches {
				results[w*batches+b], errs[w*batches+b] = st.Write(ctx, batch(w, b))
			}
		}()
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	var inserted, dups int
	for _, r := range results {
		inserted += r.Inserted
		dups += r.Duplicates
	}
	unique := batches * (size + (writers-1)*size/2)
	require.Equal(t, unique, inserted)
	require.Equal(t, writers*batches*size-unique, dups)
	require.Equal(t, unique, total(t, st))
}
