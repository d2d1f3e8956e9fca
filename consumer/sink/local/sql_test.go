package local_test

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// TestSearchSQLLikeCLS checks the analysis part against CLS's engine
// semantics, with expected values computed by the oracle from the fixture
// events: a field that was not sent is NULL (count, IS NULL, count
// DISTINCT, GROUP BY, ORDER BY with NULLs last) and the dashboard
// functions follow CLS's argument conventions.
func TestSearchSQLLikeCLS(t *testing.T) {
	s, stored := searchStore(t)
	events := oracleEvents(t, stored)
	rows := func(t *testing.T, q string) [][]any {
		t.Helper()
		res, err := search(t, s, local.SearchRequest{}, q)
		require.NoError(t, err, q)
		return res.Rows
	}
	count := func(pred func(oevent) bool) int64 {
		var n int64
		for _, e := range events {
			if pred(e) {
				n++
			}
		}
		return n
	}

	t.Run("count(col) counts the events that sent the field", func(t *testing.T) {
		got := rows(t, `* | SELECT count(*), count("objectRef.namespace"), count("impersonatedUser.username"), count("authenticationMetadata.credentialSource"), count(userAgent)`)
		want := []any{int64(len(events)), count(func(e oevent) bool { return e.present("objectRef.namespace") }),
			count(func(e oevent) bool { return e.present("impersonatedUser.username") }),
			count(func(e oevent) bool { return e.present("authenticationMetadata.credentialSource") }),
			count(func(e oevent) bool { return e.present("userAgent") })}
		require.Equal(t, [][]any{want}, got)
		require.NotEqual(t, want[0], want[1], "the fixtures have events without a namespace")
	})

	t.Run("IS NULL and count(DISTINCT)", func(t *testing.T) {
		got := rows(t, `* | SELECT count(*) AS n, count(DISTINCT "objectRef.namespace") AS ns, approx_distinct("objectRef.namespace") AS ans WHERE "objectRef.namespace" IS NULL OR "objectRef.namespace" IS NOT NULL`)
		distinct := map[string]bool{}
		for _, e := range events {
			if e.present("objectRef.namespace") {
				distinct[e.value("objectRef.namespace")] = true
			}
		}
		require.Equal(t, [][]any{{int64(len(events)), int64(len(distinct)), int64(len(distinct))}}, got)
		got = rows(t, `* | SELECT count(*) WHERE "objectRef.namespace" IS NULL`)
		require.Equal(t, [][]any{{count(func(e oevent) bool { return !e.present("objectRef.namespace") })}}, got)
	})

	t.Run("GROUP BY has a NULL group, ORDER BY puts NULLs last both ways", func(t *testing.T) {
		counts := map[string]int64{}
		var nulls int64
		for _, e := range events {
			if e.present("objectRef.namespace") {
				counts[e.value("objectRef.namespace")]++
			} else {
				nulls++
			}
		}
		var want [][]any
		for _, ns := range slices.Sorted(func(yield func(string) bool) {
			for k := range counts {
				if !yield(k) {
					return
				}
			}
		}) {
			want = append(want, []any{ns, counts[ns]})
		}
		require.NotZero(t, nulls)
		require.Equal(t, append(slices.Clone(want), []any{nil, nulls}),
			rows(t, `* | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns`))
		slices.Reverse(want)
		require.Equal(t, append(want, []any{nil, nulls}),
			rows(t, `* | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns DESC`))
	})

	t.Run("CASE WHEN and count_if", func(t *testing.T) {
		got := rows(t, `* | SELECT CASE WHEN "responseStatus.code" >= 400 THEN 'error' WHEN "responseStatus.code" IS NULL THEN 'none' ELSE 'ok' END AS outcome, count(*) AS n, count_if(verb = 'delete') AS deletes GROUP BY outcome ORDER BY outcome`)
		type agg struct{ n, deletes int64 }
		by := map[string]*agg{}
		for _, e := range events {
			o := "ok"
			switch c := code(e.Event); {
			case !e.present("responseStatus.code"):
				o = "none"
			case c >= 400:
				o = "error"
			}
			if by[o] == nil {
				by[o] = &agg{}
			}
			by[o].n++
			if e.value("verb") == "delete" {
				by[o].deletes++
			}
		}
		var want [][]any
		for _, o := range []string{"error", "none", "ok"} {
			if a := by[o]; a != nil {
				want = append(want, []any{o, a.n, a.deletes})
			}
		}
		require.GreaterOrEqual(t, len(want), 2)
		require.Equal(t, want, got)
		got = rows(t, `* | SELECT CASE verb WHEN 'get' THEN 'read' WHEN 'list' THEN 'read' END AS kind, count(*) GROUP BY kind ORDER BY kind`)
		reads := count(func(e oevent) bool { v := e.value("verb"); return v == "get" || v == "list" })
		require.Equal(t, [][]any{{"read", reads}, {nil, int64(len(events)) - reads}}, got)
	})

	t.Run("approx_percentile is the nearest-rank percentile", func(t *testing.T) {
		var codes []float64
		for _, e := range events {
			if e.present("responseStatus.code") {
				codes = append(codes, float64(code(e.Event)))
			}
		}
		sort.Float64s(codes)
		rank := func(p float64) float64 { return codes[max(int(math.Ceil(p*float64(len(codes))))-1, 0)] }
		got := rows(t, `* | SELECT approx_percentile("responseStatus.code", 0.5), approx_percentile("responseStatus.code", 0.99), approx_percentile("responseStatus.code", 0)`)
		require.Equal(t, [][]any{{rank(0.5), rank(0.99), rank(0)}}, got)
		res, err := search(t, s, local.SearchRequest{}, `* | SELECT approx_percentile("responseStatus.code", 2)`)
		require.Error(t, err, "%v", res)
	})

	t.Run("split_part, strpos, upper, DISTINCT, IN, LIKE, HAVING", func(t *testing.T) {
		got := rows(t, `* | SELECT split_part("user.username", ':', 3) AS ns, count(*) AS n WHERE strpos("user.username", 'system:serviceaccount:') = 1 GROUP BY ns HAVING count(*) >= 2 ORDER BY n DESC, ns`)
		counts := map[string]int64{}
		for _, e := range events {
			if u := e.value("user.username"); strings.HasPrefix(u, "system:serviceaccount:") {
				counts[strings.Split(u, ":")[2]]++
			}
		}
		var want [][]any
		for ns, n := range counts {
			if n >= 2 {
				want = append(want, []any{ns, n})
			}
		}
		slices.SortFunc(want, func(a, b []any) int {
			return cmp.Or(cmp.Compare(b[1].(int64), a[1].(int64)), cmp.Compare(a[0].(string), b[0].(string)))
		})
		require.NotEmpty(t, want)
		require.Equal(t, want, got)

		got = rows(t, `* | SELECT DISTINCT upper(verb) AS v WHERE verb IN ('get', 'list', 'delete') AND "requestURI" LIKE '/api%' ORDER BY v`)
		verbs := map[string]bool{}
		for _, e := range events {
			if v := e.value("verb"); (v == "get" || v == "list" || v == "delete") && strings.HasPrefix(e.value("requestURI"), "/api") {
				verbs[strings.ToUpper(v)] = true
			}
		}
		want = nil
		for _, v := range slices.Sorted(func(yield func(string) bool) {
			for k := range verbs {
				if !yield(k) {
					return
				}
			}
		}) {
			want = append(want, []any{v})
		}
		require.Len(t, want, 3)
		require.Equal(t, want, got)
	})

	t.Run("time functions take __TIMESTAMP__ in milliseconds", func(t *testing.T) {
		e := events[0]
		ts := e.StageTimestamp.UTC()
		got := rows(t, `auditID:`+e.AuditID+` AND auditpipe.cluster:`+e.Pipeline.Cluster+` AND stage:`+e.Stage+
			` | SELECT __TIMESTAMP__, date_format(__TIMESTAMP__, '%Y-%m-%d %H:%i:%s'), date_format(from_unixtime(__TIMESTAMP__ / 1000), '%T'),`+
			` time_series(__TIMESTAMP__, '5m', '%Y-%m-%d %H:%i', '0'), date_trunc('hour', cast(__TIMESTAMP__ as timestamp)),`+
			` histogram(cast(__TIMESTAMP__ as timestamp), interval 10 minute), from_unixtime(__TIMESTAMP__ / 1000)`)
		require.Equal(t, [][]any{{
			ts.UnixMilli(), ts.Format("2006-01-02 15:04:05"), ts.Format("15:04:05"),
			ts.Truncate(5 * time.Minute).Format("2006-01-02 15:04"), ts.Truncate(time.Hour).Format("2006-01-02 15:04:05"),
			ts.Truncate(10 * time.Minute).Format("2006-01-02 15:04:05"), ts.Truncate(time.Second).Format("2006-01-02 15:04:05.000"),
		}}, got)
	})
}
