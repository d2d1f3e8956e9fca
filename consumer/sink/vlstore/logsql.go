package vlstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
)

// LogsQL building blocks shared by Query and Search. Every user value is
// quoted with strconv.Quote (LogsQL's string literals take Go's escapes),
// so nothing a caller sends is read as LogsQL syntax.

// exactFilter is an exact, case-sensitive match of field's whole value.
func exactFilter(field, value string) string {
	return strconv.Quote(field) + ":=" + strconv.Quote(value)
}

// clusterFilter selects one cluster's stream: the stream index answers it
// without reading any block of the other clusters.
func clusterFilter(cluster string) string {
	return "{" + strconv.Quote(keyCluster) + "=" + strconv.Quote(cluster) + "}"
}

// timeFilters bound stageTimestamp half-open, as the SQLite store does: it
// compares unix milliseconds (stage_ts >= From.UnixMilli() AND stage_ts <
// To.UnixMilli()), which for the storage's nanosecond _time is exactly
// _time >= the millisecond of From and _time < the millisecond of To. _time
// is stageTimestamp only for events that have one (write.go's eventTime),
// so a bounded query also requires the field: events without one never
// match a time range, as in SQLite.
func timeFilters(from, to time.Time) []string {
	if from.IsZero() && to.IsZero() {
		return nil
	}
	out := []string{strconv.Quote(keyStageTS) + ":*"}
	if !from.IsZero() {
		out = append(out, "_time:>="+timeLiteral(time.UnixMilli(from.UnixMilli()).UnixNano()))
	}
	if !to.IsZero() {
		out = append(out, "_time:<"+timeLiteral(time.UnixMilli(to.UnixMilli()).UnixNano()))
	}
	return out
}

// joinFilters ANDs filters and liveRows: every read goes through it, so
// that the fieldless rows a retention delete task leaves are never read
// as events.
func joinFilters(filters []string) string {
	return strings.Join(append(slices.Clip(filters), liveRows), " ")
}

// runRows runs the LogsQL query q and calls fn, serialized, once per
// result row with the values of names (a field the row lacks is ""). The
// strings are owned by fn (cloned out of the storage's buffers).
func (s *Store) runRows(ctx context.Context, q string, names []string, fn func(vals []string)) error {
	pq, err := logstorage.ParseQuery(q)
	if err != nil {
		return fmt.Errorf("parse LogsQL %q: %w", q, err)
	}
	var mu sync.Mutex
	var fnErr error
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, pq, false, nil)
	s.visible()
	err = s.vl.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		cols := make([][]string, len(names))
		for i, n := range names {
			if c := db.GetColumnByName(n); c != nil {
				cols[i] = c.Values
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if fnErr != nil {
			return
		}
		for r := range db.RowsCount() {
			vals := make([]string, len(names))
			for i, c := range cols {
				if c != nil {
					vals[i] = strings.Clone(c[r])
				}
			}
			fn(vals)
		}
	})
	if err != nil {
		return fmt.Errorf("run LogsQL %q: %w", q, err)
	}
	return fnErr
}

// count runs `filter | stats count()`.
func (s *Store) count(ctx context.Context, filter string) (int, error) {
	n := 0
	var perr error
	err := s.runRows(ctx, filter+" | stats count() as n", []string{"n"}, func(vals []string) {
		v, err := strconv.Atoi(vals[0])
		if err != nil {
			perr = fmt.Errorf("count %q: %q is not a number", filter, vals[0])
		}
		n += v
	})
	if err == nil {
		err = perr
	}
	return n, err
}

// exists reports whether filter selects any event.
func (s *Store) exists(ctx context.Context, filter string) (bool, error) {
	found := false
	err := s.runRows(ctx, filter+" | limit 1 | fields _time", []string{"_time"}, func([]string) { found = true })
	return found, err
}

// fieldList quotes names for a `fields` pipe.
func fieldList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
