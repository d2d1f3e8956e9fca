package local_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// openStore opens a store in a fresh directory and closes it at the end of
// the test.
func openStore(tb testing.TB, opts local.Options) (*local.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "events.db")
	s, err := local.Open(path, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s, path
}

// loadedStore is a store holding every fixture event.
func loadedStore(tb testing.TB) (*local.Store, []localtest.Event) {
	tb.Helper()
	s, _ := openStore(tb, local.Options{})
	events := localtest.All(tb)
	res, err := s.Write(context.Background(), localtest.Values(events))
	require.NoError(tb, err)
	require.Equal(tb, len(events), res.Inserted)
	return s, events
}

type key struct{ cluster, auditID, stage string }

func keyOf(tb testing.TB, raw []byte) key {
	tb.Helper()
	var ev schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(raw, &ev))
	return key{ev.Pipeline.Cluster, ev.AuditID, ev.Stage}
}

func keysOf(tb testing.TB, res local.QueryResult) []key {
	tb.Helper()
	out := make([]key, 0, len(res.Events))
	for _, e := range res.Events {
		out = append(out, keyOf(tb, e))
	}
	return out
}

// expected applies the store's documented order (stageTimestamp desc, then
// cluster, auditID, stage) to the fixtures that satisfy match: an oracle
// computed without SQL.
func expected(events []localtest.Event, match func(localtest.Event) bool) []key {
	var sel []localtest.Event
	for _, e := range events {
		if match(e) {
			sel = append(sel, e)
		}
	}
	sort.SliceStable(sel, func(i, j int) bool {
		a, b := sel[i], sel[j]
		ta, tb := a.StageTimestamp.UnixMilli(), b.StageTimestamp.UnixMilli()
		if ta != tb {
			return ta > tb
		}
		ka := []string{a.Pipeline.Cluster, a.AuditID, a.Stage}
		kb := []string{b.Pipeline.Cluster, b.AuditID, b.Stage}
		for k := range ka {
			if ka[k] != kb[k] {
				return ka[k] < kb[k]
			}
		}
		return false
	})
	out := make([]key, 0, len(sel))
	for _, e := range sel {
		out = append(out, key{e.Pipeline.Cluster, e.AuditID, e.Stage})
	}
	return out
}

func TestWriteIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, local.Options{})
	events := localtest.All(t)
	values := localtest.Values(events)

	res, err := s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: len(values)}, res)

	// A Kafka redelivery of the whole batch changes nothing.
	res, err = s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Duplicates: len(values)}, res)

	// An apiserver retry inside one batch: the second copy is a duplicate,
	// even when its bytes differ (pretty-printed, other receive time).
	var again schemas.ProcessedEvent
	require.NoError(t, json.Unmarshal(values[0], &again))
	again.Pipeline.ReceivedAt = again.Pipeline.ReceivedAt.Add(time.Minute)
	retry, err := json.MarshalIndent(again, "", "  ")
	require.NoError(t, err)
	res, err = s.Write(ctx, [][]byte{values[1], retry})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Duplicates: 2}, res)

	got, err := s.Query(ctx, local.Query{Limit: local.MaxLimit})
	require.NoError(t, err)
	require.Equal(t, len(values), got.Total)
	require.Len(t, got.Events, len(values))
	require.ElementsMatch(t, expected(events, func(localtest.Event) bool { return true }), keysOf(t, got))
}

func TestWriteDuplicateWithinOneBatch(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	v := localtest.GKE(t)[0].JSON
	res, err := s.Write(context.Background(), [][]byte{v, v, v})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 1, Duplicates: 2}, res)
}

func TestWriteCountsInvalidValues(t *testing.T) {
	s, _ := openStore(t, local.Options{})
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
		[]byte(`{"kind":"Event"`), // truncated JSON
		mutate(func(e *schemas.ProcessedEvent) { e.Pipeline.Cluster = "" }),
		good[1].JSON,
		mutate(func(e *schemas.ProcessedEvent) { e.AuditID = "" }),
		mutate(func(e *schemas.ProcessedEvent) { e.Stage = "" }),
		[]byte(`[1,2,3]`),                    // JSON, but not an event
		[]byte("{\"auditID\":\"\xff\xfe\"}"), // not UTF-8
		nil,
	}
	res, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, 2, res.Inserted)
	require.Equal(t, 0, res.Duplicates)
	require.Equal(t, 7, res.Invalid)
	require.Len(t, res.InvalidValues, 7)
	var idx []int
	for _, iv := range res.InvalidValues {
		idx = append(idx, iv.Index)
		require.NotEmpty(t, iv.Reason)
	}
	require.Equal(t, []int{1, 2, 4, 5, 6, 7, 8}, idx)
	require.Contains(t, res.InvalidValues[1].Reason, "auditpipe.cluster")
	require.Contains(t, res.InvalidValues[2].Reason, "auditID")
	require.Contains(t, res.InvalidValues[3].Reason, "stage")

	// Only invalid values: nothing to do, no error.
	res, err = s.Write(context.Background(), [][]byte{[]byte("nope")})
	require.NoError(t, err)
	require.Equal(t, 1, res.Invalid)

	got, err := s.Query(context.Background(), local.Query{})
	require.NoError(t, err)
	require.Equal(t, 2, got.Total)
}

func TestWriteErrorCommitsNothing(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Write(ctx, localtest.Values(localtest.GKE(t)))
	require.Error(t, err)

	got, err := s.Query(context.Background(), local.Query{})
	require.NoError(t, err)
	require.Zero(t, got.Total)
}

func TestQueryFilters(t *testing.T) {
	s, events := loadedStore(t)
	tests := []struct {
		name  string
		q     local.Query
		match func(localtest.Event) bool
		min   int // guards against a filter that trivially matches nothing
	}{
		{"all", local.Query{}, func(localtest.Event) bool { return true }, 62},
		{"cluster", local.Query{Cluster: localtest.ClusterKind},
			func(e localtest.Event) bool { return e.Pipeline.Cluster == localtest.ClusterKind }, 37},
		{"verb", local.Query{Verb: "delete"},
			func(e localtest.Event) bool { return e.Verb == "delete" }, 8},
		{"user", local.Query{User: "system:serviceaccount:kube-system:replicaset-controller"},
			func(e localtest.Event) bool {
				return e.User.Username == "system:serviceaccount:kube-system:replicaset-controller"
			}, 2},
		{"resource", local.Query{Resource: "pods"},
			func(e localtest.Event) bool { return e.ObjectRef != nil && e.ObjectRef.Resource == "pods" }, 14},
		{"namespace", local.Query{Namespace: "default"},
			func(e localtest.Event) bool { return e.ObjectRef != nil && e.ObjectRef.Namespace == "default" }, 18},
		{"combined", local.Query{Cluster: localtest.ClusterGKE, Verb: "create", Resource: "clusterroles"},
			func(e localtest.Event) bool {
				return e.Pipeline.Cluster == localtest.ClusterGKE && e.Verb == "create" &&
					e.ObjectRef != nil && e.ObjectRef.Resource == "clusterroles"
			}, 1},
		{"no match", local.Query{Cluster: "nope"}, func(localtest.Event) bool { return false }, 0},
		{"case-sensitive", local.Query{Verb: "DELETE"}, func(localtest.Event) bool { return false }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), tc.q)
			require.NoError(t, err)
			want := expected(events, tc.match)
			require.GreaterOrEqual(t, len(want), tc.min)
			require.Equal(t, len(want), got.Total)
			require.Equal(t, want, keysOf(t, got), "events, in order")
			require.NotNil(t, got.Events)
		})
	}
}

func TestQueryTimeRange(t *testing.T) {
	s, events := loadedStore(t)
	// 2020-01-09T00:18:50.683Z and .919Z are two GKE events; bounds on
	// exact event times check the half-open interval.
	from := time.Date(2020, 1, 9, 0, 18, 50, 683_000_000, time.UTC)
	to := time.Date(2020, 1, 10, 22, 24, 5, 196_000_000, time.UTC) // an event's time: excluded
	in := func(e localtest.Event) bool {
		ms := e.StageTimestamp.UnixMilli()
		return ms >= from.UnixMilli() && ms < to.UnixMilli()
	}
	tests := []struct {
		name     string
		q        local.Query
		match    func(localtest.Event) bool
		wantSize int
	}{
		{"from and to", local.Query{From: from, To: to}, in, 4},
		{"from only", local.Query{From: from},
			func(e localtest.Event) bool { return !e.StageTimestamp.Before(from) }, 19},
		{"to only", local.Query{To: from},
			func(e localtest.Event) bool { return e.StageTimestamp.Before(from) }, 43},
		{"other time zone", local.Query{From: from.In(time.FixedZone("CST", 8*3600)), To: to}, in, 4},
		{"empty window", local.Query{From: to, To: from}, func(localtest.Event) bool { return false }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Query(context.Background(), tc.q)
			require.NoError(t, err)
			want := expected(events, tc.match)
			require.Len(t, want, tc.wantSize)
			require.Equal(t, want, keysOf(t, got))
			require.Equal(t, tc.wantSize, got.Total)
		})
	}
}

func TestQueryLimitAndTotal(t *testing.T) {
	s, events := loadedStore(t)
	all := expected(events, func(localtest.Event) bool { return true })
	ctx := context.Background()

	got, err := s.Query(ctx, local.Query{Limit: 5})
	require.NoError(t, err)
	require.Equal(t, len(all), got.Total, "total counts every match, not the page")
	require.Equal(t, all[:5], keysOf(t, got))

	got, err = s.Query(ctx, local.Query{Cluster: localtest.ClusterKind, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, 37, got.Total)
	require.Len(t, got.Events, 1)

	// The audit2rbac events share timestamps to the second: ties are broken
	// by cluster, auditID and stage, so two identical queries agree.
	again, err := s.Query(ctx, local.Query{Cluster: localtest.ClusterKind, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, got.Events, again.Events)

	for _, limit := range []int{0, -1, local.MaxLimit + 1} {
		got, err = s.Query(ctx, local.Query{Limit: limit})
		require.NoError(t, err, "limit %d", limit)
		require.Len(t, got.Events, len(all), "limit %d", limit)
	}
}

func TestQueryFullText(t *testing.T) {
	s, events := loadedStore(t)
	// The oracle: sub occurs as whole words (FTS5's unicode61 tokens are
	// runs of letters and digits), case-insensitively.
	contains := func(sub string) func(localtest.Event) bool {
		re := regexp.MustCompile(`(?i)(^|[^\pL\pN])` + regexp.QuoteMeta(sub) + `($|[^\pL\pN])`)
		return func(e localtest.Event) bool { return re.Match(e.JSON) }
	}
	tests := []struct {
		name, text string
		match      func(localtest.Event) bool
		min        int
	}{
		// An object name inside the request body.
		{"name in body", "evil-user-binding", contains("evil-user-binding"), 1},
		// A part of a service-account user name, split at punctuation.
		{"token of a user name", "replicaset-controller", contains("replicaset-controller"), 2},
		// A word of responseStatus.message, case-insensitive.
		{"message word", "FORBIDDEN", contains("forbidden"), 10},
		{"two words, AND", "forbidden ns1", func(e localtest.Event) bool {
			return contains("forbidden")(e) && contains("ns1")(e)
		}, 1},
		{"phrase", `"cannot list pods"`, contains("cannot list pods"), 1},
		{"prefix", "replicaset-contr*", contains("replicaset-controller"), 2},
		{"number", "403", func(e localtest.Event) bool {
			return e.ResponseStatus != nil && e.ResponseStatus.Code == 403
		}, 1},
		{"with filter", "forbidden", func(e localtest.Event) bool {
			return contains("forbidden")(e) && e.Verb == "list"
		}, 1},
		{"no match", "zzzz-not-there", func(localtest.Event) bool { return false }, 0},
		// Keys are not indexed: every event has them.
		{"keys not indexed", "requestReceivedTimestamp", func(localtest.Event) bool { return false }, 0},
		// FTS5 syntax in user text is searched for, not interpreted.
		{"fts syntax is literal", `NOT ( -"`, func(localtest.Event) bool { return false }, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := local.Query{Text: tc.text, Limit: local.MaxLimit}
			if tc.name == "with filter" {
				q.Verb = "list"
			}
			got, err := s.Query(context.Background(), q)
			require.NoError(t, err)
			want := expected(events, tc.match)
			require.GreaterOrEqual(t, len(want), tc.min)
			require.Equal(t, want, keysOf(t, got))
			require.Equal(t, len(want), got.Total)
		})
	}
}

func TestQueryReturnsStoredJSON(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	ev := localtest.GKE(t)[0]
	pretty, err := json.MarshalIndent(ev.ProcessedEvent, "", "  ")
	require.NoError(t, err)
	_, err = s.Write(context.Background(), [][]byte{pretty})
	require.NoError(t, err)
	got, err := s.Query(context.Background(), local.Query{})
	require.NoError(t, err)
	require.Len(t, got.Events, 1)
	require.JSONEq(t, string(ev.JSON), string(got.Events[0]))
	require.NotContains(t, string(got.Events[0]), "\n", "stored compacted, one line")
}

func TestColumnsAndJSONForSQL(t *testing.T) {
	// The coming `| SQL` stage runs over these columns and json_extract;
	// check the values land where the field names say.
	s, path := openStore(t, local.Options{})
	_, err := s.Write(context.Background(), localtest.Values(localtest.GKE(t)))
	require.NoError(t, err)

	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var (
		user, verb, resource, name, apiGroup, sourceIP, groups, nameJSON string
		code, stageTS                                                    int64
	)
	err = db.QueryRow(`SELECT username, verb, resource, name, api_group, source_ip, user_groups,
		code, stage_ts, json_extract(event, '$.objectRef.name')
		FROM events WHERE audit_id = '75769369-6f53-4da5-883e-75a5c8b593fb'`).
		Scan(&user, &verb, &resource, &name, &apiGroup, &sourceIP, &groups, &code, &stageTS, &nameJSON)
	require.NoError(t, err)
	require.Equal(t, "mark.stemm@sysdig.com", user)
	require.Equal(t, "create", verb)
	require.Equal(t, "clusterrolebindings", resource)
	require.Equal(t, "evil-user-binding", name)
	require.Equal(t, "rbac.authorization.k8s.io", apiGroup)
	require.Equal(t, "73.170.242.20", sourceIP)
	require.Empty(t, groups)
	require.EqualValues(t, 201, code)
	require.Equal(t, time.Date(2020, 1, 7, 0, 40, 20, 502_000_000, time.UTC).UnixMilli(), stageTS)
	require.Equal(t, name, nameJSON)

	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.Equal(t, "wal", mode)
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "events.db")
	events := localtest.All(t)

	s, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	_, err = s.Write(context.Background(), localtest.Values(events))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is safe twice")

	s, err = local.Open(path, local.Options{})
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Query(context.Background(), local.Query{Text: "evil-user-binding"})
	require.NoError(t, err)
	require.Equal(t, 1, got.Total, "full-text index survives too")
	res, err := s.Write(context.Background(), localtest.Values(events))
	require.NoError(t, err)
	require.Equal(t, len(events), res.Duplicates)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec("PRAGMA user_version = 99")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	_, err = local.Open(path, local.Options{})
	require.ErrorContains(t, err, "schema version 99")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, _ := openStore(t, local.Options{Registerer: reg})
	v := localtest.GKE(t)[0].JSON
	_, err := s.Write(context.Background(), [][]byte{v, v, []byte("x")})
	require.NoError(t, err)
	_, err = s.Query(context.Background(), local.Query{})
	require.NoError(t, err)

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	count, err := testutil.GatherAndCount(reg,
		"auditpipe_localstore_events_total", "auditpipe_localstore_write_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 4, count, "three outcomes and one histogram")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP auditpipe_localstore_events_total Events handed to the local store, by outcome (inserted, duplicate, invalid).
# TYPE auditpipe_localstore_events_total counter
auditpipe_localstore_events_total{outcome="duplicate"} 1
auditpipe_localstore_events_total{outcome="inserted"} 1
auditpipe_localstore_events_total{outcome="invalid"} 1
`), "auditpipe_localstore_events_total"))
}

func TestConcurrentQueryDuringWrite(t *testing.T) {
	s, _ := openStore(t, local.Options{ReadConns: 3})
	base := localtest.All(t)
	const batches = 8
	ctx := context.Background()

	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for b := range batches {
			res, err := s.Write(ctx, variants(t, base, b))
			if !assertNoError(t, err) {
				return
			}
			if res.Inserted != len(base) {
				t.Errorf("batch %d: inserted %d, want %d", b, res.Inserted, len(base))
			}
		}
	}()
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				q := local.Query{Limit: 10}
				if r == 1 {
					q.Text = "forbidden"
				}
				got, err := s.Query(ctx, q)
				if !assertNoError(t, err) {
					return
				}
				if got.Total < last {
					t.Errorf("reader %d: total went down from %d to %d", r, last, got.Total)
				}
				if len(got.Events) != min(10, got.Total) {
					t.Errorf("reader %d: %d events for total %d: page and total from different snapshots", r, len(got.Events), got.Total)
				}
				last = got.Total
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	wg.Wait()
	got, err := s.Query(ctx, local.Query{})
	require.NoError(t, err)
	require.Equal(t, batches*len(base), got.Total)
}

// assertNoError reports err from a goroutine other than the test's, where
// require's FailNow must not be called.
func assertNoError(tb testing.TB, err error) bool {
	tb.Helper()
	if err != nil {
		tb.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// variants returns copies of events with auditIDs made unique by n, as if
// the same requests happened again.
func variants(tb testing.TB, events []localtest.Event, n int) [][]byte {
	tb.Helper()
	out := make([][]byte, len(events))
	for i, e := range events {
		ev := e.ProcessedEvent
		ev.AuditID = fmt.Sprintf("%s-%d", ev.AuditID, n)
		b, err := json.Marshal(ev)
		if err != nil {
			tb.Errorf("marshal: %v", err)
		}
		out[i] = b
	}
	return out
}
