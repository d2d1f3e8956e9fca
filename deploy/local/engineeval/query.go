package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// A typical console query, written once in CLS's language for the SQLite
// store (local.Store.Search, the API's path) and once by hand in LogsQL.
type consoleQuery struct {
	name string
	// window is the console's time range; 0 = the whole store.
	window time.Duration
	// cql and logsql make the query for the i-th random value (users,
	// namespaces, words).
	cql  func(r *rand.Rand) (string, string)
	page bool // an event search: a page of 50 newest first + the total
}

// queries: the same values for both engines come from the same seed.
func consoleQueries() []consoleQuery {
	return []consoleQuery{
		{name: "keyword-1h", window: time.Hour, page: true, cql: func(*rand.Rand) (string, string) {
			return `verb:delete AND objectRef.resource:secrets`,
				`verb:=delete "objectRef.resource":=secrets`
		}},
		{name: "keyword-range-24h", window: 24 * time.Hour, page: true, cql: func(r *rand.Rand) (string, string) {
			ns := "team-" + strconv.Itoa(r.IntN(50))
			return `objectRef.namespace:` + ns + ` AND responseStatus.code>=400`,
				`"objectRef.namespace":="` + ns + `" "responseStatus.code":>=400`
		}},
		{name: "user-24h", window: 24 * time.Hour, page: true, cql: func(r *rand.Rand) (string, string) {
			u := "user-" + strconv.Itoa(r.IntN(200)) + "@example.com"
			return `user.username:"` + u + `"`, `"user.username":="` + u + `"`
		}},
		{name: "annotation-7d", page: true, cql: func(*rand.Rand) (string, string) {
			return `annotations.authorization.k8s.io/decision:forbid`,
				`"annotations.authorization.k8s.io/decision":=forbid`
		}},
		{name: "fulltext-rare-7d", page: true, cql: func(r *rand.Rand) (string, string) {
			w := fmt.Sprintf("trace%05d", r.IntN(50000))
			return w, `*:` + w
		}},
		{name: "fulltext-common-24h", window: 24 * time.Hour, page: true, cql: func(*rand.Rand) (string, string) {
			return `forbidden`, `*:forbidden`
		}},
		{name: "sql-top-deleters-24h", window: 24 * time.Hour, cql: func(*rand.Rand) (string, string) {
			return `verb:delete | SELECT "user.username" AS user, count(*) AS deletes GROUP BY user ORDER BY deletes DESC LIMIT 10`,
				`verb:=delete | stats by ("user.username") count() deletes | sort by (deletes desc) limit 10`
		}},
		{name: "sql-histogram-24h", window: 24 * time.Hour, cql: func(*rand.Rand) (string, string) {
			return `* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS time, COUNT(1) AS qps, userAgent GROUP BY time, userAgent ORDER BY time LIMIT 10000`,
				`* | stats by (_time:1m, userAgent) count() qps | sort by (_time) limit 10000`
		}},
		{name: "sql-codes-by-verb-7d", cql: func(*rand.Rand) (string, string) {
			return `* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY verb, code ORDER BY n DESC`,
				`* | stats by (verb, "responseStatus.code") count() n | sort by (n desc)`
		}},
		{name: "sql-annotation-group-24h", window: 24 * time.Hour, cql: func(*rand.Rand) (string, string) {
			return `* | SELECT "annotations.authorization.k8s.io/decision" AS d, count(*) AS n GROUP BY d ORDER BY n DESC`,
				`* | stats by ("annotations.authorization.k8s.io/decision") count() n | sort by (n desc)`
		}},
	}
}

// queryResult is the latency and result size of one query on one engine.
type queryResult struct {
	engine, query string
	lat           []time.Duration
	matched       []int // total (event search) or rows (analysis) per rep
}

// runQueries runs every query reps times on both stores (alternating, same
// windows and values) and returns the latencies.
func runQueries(ctx context.Context, sq *local.Store, vl *logstorage.Storage, reps int, span time.Duration) ([]queryResult, error) {
	var out []queryResult
	for _, q := range consoleQueries() {
		rs := queryResult{engine: engineSQLite, query: q.name}
		rv := queryResult{engine: engineVL, query: q.name}
		r := rand.New(rand.NewPCG(7, 7))
		for range reps {
			var from, to time.Time
			if q.window > 0 {
				from = corpusStart.Add(time.Duration(r.Int64N(int64(span - q.window)))).Truncate(time.Minute)
				to = from.Add(q.window)
			}
			cq, lq := q.cql(r)
			n, d, err := searchSQLite(ctx, sq, cq, from, to, q.page)
			if err != nil {
				return out, fmt.Errorf("%s on sqlite: %w", q.name, err)
			}
			rs.lat, rs.matched = append(rs.lat, d), append(rs.matched, n)
			n, d, err = searchVL(ctx, vl, lq, from, to, q.page)
			if err != nil {
				return out, fmt.Errorf("%s on vlogs (%s): %w", q.name, lq, err)
			}
			rv.lat, rv.matched = append(rv.lat, d), append(rv.matched, n)
		}
		out = append(out, rs, rv)
	}
	return out, nil
}

func searchSQLite(ctx context.Context, s *local.Store, q string, from, to time.Time, page bool) (int, time.Duration, error) {
	pq, err := cql.Parse(q)
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	res, err := s.Search(ctx, local.SearchRequest{Query: pq, From: from, To: to, Limit: 50})
	d := time.Since(t0)
	if err != nil {
		return 0, d, err
	}
	if page {
		return res.Total, d, nil
	}
	return len(res.Rows), d, nil
}

// searchVL runs an event search as the API would on VictoriaLogs: the
// page (50 newest, their _msg) and the total (a second query, | count()),
// or an analysis' rows.
func searchVL(ctx context.Context, s *logstorage.Storage, q string, from, to time.Time, page bool) (int, time.Duration, error) {
	if !from.IsZero() {
		q = fmt.Sprintf("_time:[%s, %s) %s", from.Format(time.RFC3339), to.Format(time.RFC3339), q)
	}
	t0 := time.Now()
	if !page {
		rows, err := runVL(ctx, s, q, "")
		return rows, time.Since(t0), err
	}
	got, err := runVL(ctx, s, q+" | sort by (_time desc) | limit 50 | fields _time, _msg", "")
	if err != nil {
		return 0, time.Since(t0), err
	}
	var total int
	if _, err := runVL(ctx, s, q+" | count() n", "n", &total); err != nil {
		return 0, time.Since(t0), err
	}
	if got > total {
		return total, time.Since(t0), fmt.Errorf("page of %d > total %d", got, total)
	}
	return total, time.Since(t0), nil
}

// runVL runs q and returns the number of result rows; with col, it parses
// that column of the single result row into *into[0].
func runVL(ctx context.Context, s *logstorage.Storage, q, col string, into ...*int) (int, error) {
	pq, err := logstorage.ParseQuery(q)
	if err != nil {
		return 0, err
	}
	var mu sync.Mutex
	rows := 0
	var colVal string
	var keep []string // the page's values, copied as an API would
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, pq, false, nil)
	err = s.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		mu.Lock()
		defer mu.Unlock()
		rows += db.RowsCount()
		if col != "" {
			if c := db.GetColumnByName(col); c != nil && len(c.Values) > 0 {
				colVal = strings.Clone(c.Values[0])
			}
		}
		if c := db.GetColumnByName("_msg"); c != nil {
			for _, v := range c.Values {
				keep = append(keep, strings.Clone(v))
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if len(keep) != 0 && len(keep) != rows {
		return rows, fmt.Errorf("%d rows but %d _msg values", rows, len(keep))
	}
	if col != "" {
		if colVal == "" {
			return rows, errors.New("no value for " + col)
		}
		n, err := strconv.Atoi(colVal)
		if err != nil {
			return rows, fmt.Errorf("%s = %q: %w", col, colVal, err)
		}
		*into[0] = n
	}
	return rows, nil
}

func printQueries(w io.Writer, rs []queryResult) {
	fmt.Fprintf(w, "%-26s %-7s %8s %8s %8s %12s\n", "query", "engine", "p50-ms", "p95-ms", "max-ms", "matched(avg)")
	for _, r := range rs {
		lat := slices.Clone(r.lat)
		slices.Sort(lat)
		pct := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
		}
		sum := 0
		for _, m := range r.matched {
			sum += m
		}
		fmt.Fprintf(w, "%-26s %-7s %8.1f %8.1f %8.1f %12.1f\n", r.query, r.engine, pct(0.5), pct(0.95), pct(1), float64(sum)/float64(len(r.matched)))
	}
}
