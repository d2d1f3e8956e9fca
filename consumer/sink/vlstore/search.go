package vlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// Search runs a CLS query (consumer/search/cql) with full fidelity by the
// fallback of decision 0026: the storage selects candidates by a LogsQL
// filter that is a superset of the matches (the cluster's stream, the
// time range, and per-term filters where they are provably implied, see
// cqlPrefilter), the candidates are loaded into an ephemeral SQLite store
// (consumer/sink/local, in a temporary directory) and the request runs
// there unchanged: the same compiler, the same CLS word rules, the same
// `| SQL`, the same cursors. Answers equal the SQLite store's by
// construction, for the events the SQLite store accepts (see the package
// doc). The cost grows with the candidates, not with the matches' page:
// every call loads all of them, because the total is exact.
func (s *Store) Search(ctx context.Context, req eventstore.SearchRequest) (eventstore.SearchResult, error) {
	defer s.observeQuery(time.Now())
	return s.search(ctx, req, maxFallbackCandidates)
}

// maxFallbackCandidates bounds the fallback: past it a search is refused
// as too broad (the caller's error) rather than run for minutes with a
// SQLite copy of the candidates in TMPDIR. At ~70 µs per candidate this
// is ~7 s of CPU and ~0.5 GB of temporary files (~4.7 KB per ~1 KB
// event with the WAL, measured; decision 0026's NOTES).
const maxFallbackCandidates = 100_000

func (s *Store) search(ctx context.Context, req eventstore.SearchRequest, maxCandidates int) (eventstore.SearchResult, error) {
	run, _, err := s.plan(req, maxCandidates)
	if err != nil {
		return eventstore.SearchResult{}, err
	}
	return run(ctx)
}

// Plans, as plan names them.
const (
	planNative   = "native"
	planFallback = "fallback"
)

// plan decides how req is answered: natively in LogsQL (planNative),
// where it says the request exactly, else by the fallback
// (planFallback). Nothing is read until run is called.
func (s *Store) plan(req eventstore.SearchRequest, maxCandidates int) (run func(context.Context) (eventstore.SearchResult, error), how string, err error) {
	q := req.Query
	if q == nil {
		q = &cql.Query{}
	}
	if q.SQL != nil && req.Cursor != "" {
		return nil, "", &eventstore.InvalidSearchError{Param: "cursor", Msg: "a query with an analysis part (| SELECT ...) has no pages; use its LIMIT"}
	}
	var after *cursor
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor)
		if err != nil {
			return nil, "", err
		}
		after = &c
	}
	var filters []string
	if req.Cluster != "" {
		filters = append(filters, clusterFilter(req.Cluster))
	}
	filters = append(filters, timeFilters(req.From, req.To)...)
	var fallbackFilters []string
	if f := cqlPrefilter(q.Filter, s.lowered); f != "" {
		fallbackFilters = append(slices.Clip(filters), f)
	} else {
		fallbackFilters = filters
	}
	fallback := func(ctx context.Context) (eventstore.SearchResult, error) {
		// One pass: the candidates, one more than the bound at most (the
		// limit pipe ends the query there), rather than a count and then
		// a read, each a pass over the prefilter (which for full text
		// reads every value of every event in range).
		cands, err := s.fetch(ctx, joinFilters(fallbackFilters)+" | limit "+strconv.Itoa(max(maxCandidates, 0)+1), nil)
		if err != nil {
			return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: candidates: %w", err)
		}
		if len(cands) > maxCandidates {
			return eventstore.SearchResult{}, &eventstore.InvalidSearchError{Param: "q", Msg: fmt.Sprintf(
				"this query is evaluated event by event here and would have to read more than %d events: narrow it by time range, cluster or a key:value term", maxCandidates)}
		}
		// The ephemeral store numbers events in insertion order, and its
		// cursors carry that number to break ties between copies under a
		// reused auditID: insert in one fixed order so that a cursor stays
		// valid in the next call.
		slices.SortFunc(cands, func(a, b storedEvent) int { return compareStored(&a, &b) })
		return s.searchEphemeral(ctx, cands, req, after)
	}
	// A native plan that meets data it cannot answer exactly
	// (errNotExact) hands the request to the fallback; so does full text
	// whose words some event in range has in a field full text does not
	// see (textGuard: rare, e.g. a cluster's name).
	guard := textGuard(q.Filter, s.lowered)
	native := func(f func(ctx context.Context) (eventstore.SearchResult, error)) (func(context.Context) (eventstore.SearchResult, error), string, error) {
		return func(ctx context.Context) (eventstore.SearchResult, error) {
			if guard != "" {
				hit, err := s.exists(ctx, joinFilters(append(slices.Clip(filters), guard)))
				if err != nil {
					return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: %w", err)
				}
				if hit {
					return fallback(ctx)
				}
			}
			res, err := f(ctx)
			switch {
			case errors.Is(err, errNotExact):
				return fallback(ctx)
			case err != nil:
				return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: %w", err)
			}
			return res, nil
		}, planNative, nil
	}
	timed := !req.From.IsZero() || !req.To.IsZero()
	if q.SQL != nil && countOnly(q.SQL) {
		if exact, ok := exactLogsQL(q.Filter, s.lowered); ok {
			return native(func(ctx context.Context) (eventstore.SearchResult, error) {
				n, err := s.count(ctx, joinFilters(append(filters, exact)))
				if err != nil {
					return eventstore.SearchResult{}, err
				}
				return eventstore.SearchResult{Columns: []string{q.SQL.Items[0].Name()}, Rows: [][]any{{int64(n)}}, Total: 1}, nil
			})
		}
	}
	if q.SQL != nil {
		if g, ok := planGroupCount(q.SQL); ok {
			if exact, ok := exactLogsQL(q.Filter, s.lowered); ok {
				return native(func(ctx context.Context) (eventstore.SearchResult, error) {
					return g.run(ctx, s, append(slices.Clip(filters), exact), timed)
				})
			}
		}
	}
	if q.SQL == nil {
		if exact, ok := exactLogsQL(q.Filter, s.lowered); ok {
			return native(func(ctx context.Context) (eventstore.SearchResult, error) {
				readWhole := smallTotal
				if guard != "" {
					readWhole = smallTotalText
				}
				return s.searchNative(ctx, append(slices.Clip(filters), exact), timed, req.Limit, after, readWhole)
			})
		}
	}
	return fallback, planFallback, nil
}

// smallTotal is the most matches searchNative reads whole (what the
// order needs, ~2.7 µs each), counting them as it reads, rather than
// counting first and finding the page by a top-k: each of those is one
// more pass of the filter over the range. smallTotalText is the same for
// full text, whose filter costs far more per pass (every field's values
// and a regexp per match): at 1M events, a common word over a day (28,837
// matches) took 526 ms with two more passes, 308 ms read whole.
const (
	smallTotal     = 2000
	smallTotalText = 50_000
)

// searchNative is Search for a filter that LogsQL says exactly
// (exactLogsQL): the total is a count() and the page the newest after the
// cursor (Store.newest); nothing goes through SQLite.
func (s *Store) searchNative(ctx context.Context, filters []string, timed bool, limit int, after *cursor, readWhole int) (eventstore.SearchResult, error) {
	limit = pageLimit(limit)
	var from *storedEvent
	if after != nil {
		k := after.key()
		from = &k
	}
	// Few matches (the usual search with a time range and a term or
	// two): one read of them all, at most readWhole+1 (the limit pipe
	// ends the query there), whose number is the total, sorted here.
	// Otherwise the total is a count() and the page newest's top-k and
	// read: each a pass over the filter's rows.
	all, err := s.fetch(ctx, joinFilters(filters)+" | limit "+strconv.Itoa(readWhole+1), nil)
	if err != nil {
		return eventstore.SearchResult{}, err
	}
	var page []storedEvent
	total := len(all)
	if total <= readWhole {
		page = slices.DeleteFunc(all, func(e storedEvent) bool { return from != nil && compareStored(from, &e) >= 0 })
		slices.SortFunc(page, func(a, b storedEvent) int { return compareStored(&a, &b) })
		// One more than the page tells whether there is a next one.
		page = page[:min(len(page), limit+1)]
	} else {
		if total, err = s.count(ctx, joinFilters(filters)); err != nil {
			return eventstore.SearchResult{}, err
		}
		if page, err = s.newest(ctx, filters, timed, limit+1, from); err != nil {
			return eventstore.SearchResult{}, err
		}
	}
	res := eventstore.SearchResult{Events: []json.RawMessage{}, Total: total}
	if len(page) > limit {
		page = page[:limit]
		res.Cursor = cursorOf(&page[limit-1])
	}
	if res.Events, err = s.events(page); err != nil {
		return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: %w", err)
	}
	return res, nil
}

// searchTempPattern names the fallback's temporary directories.
const searchTempPattern = "vlstore-search-"

// searchEphemeral runs req on a SQLite store holding only cands, deleted
// afterwards. The directory is under Config.SearchTempDir (default
// TMPDIR).
func (s *Store) searchEphemeral(ctx context.Context, cands []storedEvent, req eventstore.SearchRequest, after *cursor) (eventstore.SearchResult, error) {
	dir, err := os.MkdirTemp(s.cfg.SearchTempDir, searchTempPattern)
	if err != nil {
		return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: temporary store: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			s.logger.Warn("vlstore: remove the search's temporary store", "dir", dir, "err", err)
		}
	}()
	eph, err := local.Open(filepath.Join(dir, "search.db"), local.Options{ReadConns: 1})
	if err != nil {
		return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: temporary store: %w", err)
	}
	defer func() {
		if err := eph.Close(); err != nil {
			s.logger.Warn("vlstore: close the search's temporary store", "dir", dir, "err", err)
		}
	}()
	var refused []int
	if len(cands) > 0 {
		values := make([][]byte, len(cands))
		for i := range cands {
			msg, err := s.event(&cands[i])
			if err != nil {
				return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: %w", err)
			}
			values[i] = []byte(msg)
		}
		wr, err := eph.Write(ctx, values)
		if err != nil {
			return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: load %d candidates: %w", len(values), err)
		}
		for _, iv := range wr.InvalidValues {
			refused = append(refused, iv.Index)
		}
		if wr.Invalid > 0 || wr.Duplicates > 0 {
			// Events this store took and SQLite refuses (its validation
			// is wider) or folds (its hash-less comparison differs):
			// Search cannot find them, and a duplicate shifts the row
			// ids that cursors are translated to.
			s.logger.Warn("vlstore: search: candidates the SQLite evaluation does not hold",
				"invalid", wr.Invalid, "duplicates", wr.Duplicates, "first", firstReason(wr))
		}
	}
	ids := ephemeralIDs(len(cands), refused)
	if after != nil {
		req.Cursor = after.toSQLite(cands, ids)
	}
	res, err := eph.Search(ctx, req)
	if err != nil {
		return eventstore.SearchResult{}, err // the caller's errors stay *cql.Error / *InvalidSearchError
	}
	if res.Cursor, err = fromSQLite(res.Cursor, cands, ids); err != nil {
		return eventstore.SearchResult{}, fmt.Errorf("vlstore: search: the temporary store's cursor: %w", err)
	}
	return res, nil
}

func firstReason(wr eventstore.WriteResult) string {
	if len(wr.InvalidValues) == 0 {
		return ""
	}
	return wr.InvalidValues[0].Reason
}

// cqlPrefilter is a LogsQL filter implied by the CLS filter e (every event
// e matches, it matches too), "" when none is. Only what is provably
// implied is used:
//   - AND: both sides' filters (each alone is implied); OR: both sides must
//     have one; NOT: none (the negation of a superset is not one).
//   - key:value and full text: the value's CLS words, each as an any-case
//     phrase (or its literal prefix for a wildcard word) on the key's
//     field, or on any field for full text (see textQuery.prefilter);
//     not for keys VictoriaLogs does not hold as fields (over its
//     field-name limit, stageTimestamp's zero time) nor CLS's
//     __SPECIAL__ keys.
//   - a range (key>=n): the key is present and not empty (a number).
//   - key:* and key:"": none (VictoriaLogs drops empty values, so
//     "present" cannot be told from "missing").
func cqlPrefilter(e cql.Expr, lowered bool) string {
	switch e := e.(type) {
	case *cql.And:
		l, r := cqlPrefilter(e.L, lowered), cqlPrefilter(e.R, lowered)
		switch {
		case l == "":
			return r
		case r == "":
			return l
		}
		return l + " " + r
	case *cql.Or:
		l, r := cqlPrefilter(e.L, lowered), cqlPrefilter(e.R, lowered)
		if l == "" || r == "" {
			return ""
		}
		return "(" + l + " OR " + r + ")"
	case *cql.Term:
		return termPrefilter(e, lowered)
	}
	return ""
}

func termPrefilter(t *cql.Term, lowered bool) string {
	field := `"*"`
	if t.Field != "" {
		// stageTimestamp: the zero time is not stored as a field.
		if len(t.Field) > maxFieldNameSize || strings.HasPrefix(t.Field, "__") || t.Field == keyStageTS {
			return ""
		}
		field = strconv.Quote(t.Field)
	}
	switch t.Kind {
	case cql.Match:
		pat := cql.CompilePattern(t.Pattern, t.Quoted)
		return textQuery{patterns: []cql.Pattern{pat}}.prefilterOn(field, lowered)
	case cql.Range:
		if t.Field == "" {
			return ""
		}
		return field + ":*"
	}
	return ""
}

// countOnly reports whether sel is `SELECT count(*) [AS name]` and
// nothing else: one row, the number of matches, which a count() says.
func countOnly(sel *cql.Select) bool {
	if sel.Distinct || len(sel.Items) != 1 || sel.Where != nil || len(sel.GroupBy) > 0 || sel.Having != nil || len(sel.OrderBy) > 0 || sel.Limit == 0 || sel.Limit > eventstore.MaxLimit {
		return false
	}
	c, ok := sel.Items[0].Expr.(*cql.Call)
	return ok && c.Name == "count" && c.Star && !c.Distinct && len(c.Args) == 0
}
