package local

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// Search runs a CLS query on the store through the read-only connections.
// The page and the total come from the same snapshot.
func (s *Store) Search(ctx context.Context, req SearchRequest) (SearchResult, error) {
	start := time.Now()
	defer func() { s.metrics.queryDuration.Observe(time.Since(start).Seconds()) }()

	q := req.Query
	if q == nil {
		q = &cql.Query{}
	}
	c := &compiler{q: q, timeRange: !req.From.IsZero() || !req.To.IsZero()}
	filter, err := c.filter(q.Filter)
	if err != nil {
		return SearchResult{}, err
	}
	conds := []string{filter}
	if req.Cluster != "" {
		conds = append(conds, "cluster = "+c.arg(req.Cluster))
	}
	if !req.From.IsZero() {
		conds = append(conds, "stage_ts >= "+c.arg(req.From.UnixMilli()))
	}
	if !req.To.IsZero() {
		conds = append(conds, "stage_ts < "+c.arg(req.To.UnixMilli()))
	}

	tx, err := s.readers.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return SearchResult{}, fmt.Errorf("search local store: begin: %w", err)
	}
	// Read-only: rolling back just releases the snapshot.
	defer func() { _ = tx.Rollback() }()
	if err := resolveLookups(ctx, tx, c.args); err != nil {
		return SearchResult{}, err
	}
	if err := resolveIDBounds(ctx, tx, c.args, req.From, req.To); err != nil {
		return SearchResult{}, err
	}

	if q.SQL != nil {
		if req.Cursor != "" {
			return SearchResult{}, &InvalidSearchError{Param: "cursor", Msg: "a query with an analysis part (| SELECT ...) has no pages; use its LIMIT"}
		}
		// req.Limit is ignored, as CLS's search API ignores Limit for
		// SQL: the statement's LIMIT (default 100) decides.
		return s.analyse(ctx, tx, c, conds, q.SQL)
	}
	return s.events(ctx, tx, c, conds, req)
}

func (s *Store) events(ctx context.Context, tx *sql.Tx, c *compiler, conds []string, req SearchRequest) (SearchResult, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	where := strings.Join(conds, " AND ")
	args := c.args

	res := SearchResult{Events: []json.RawMessage{}}
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM events WHERE "+where, args...).Scan(&res.Total); err != nil {
		return SearchResult{}, fmt.Errorf("search local store: count: %w", err)
	}
	if res.Total == 0 {
		return res, nil
	}
	if req.Cursor != "" {
		k, err := decodeCursor(req.Cursor)
		if err != nil {
			return SearchResult{}, err
		}
		after, kargs := k.after()
		where += " AND " + after
		args = append(append([]any{}, args...), kargs...)
	}
	// One row more than the page tells whether there is a next page.
	rows, err := tx.QueryContext(ctx,
		"SELECT event, stage_ts, cluster, audit_id, stage, id FROM events WHERE "+where+
			" ORDER BY stage_ts DESC, cluster, audit_id, stage, id LIMIT ?",
		append(args, limit+1)...)
	if err != nil {
		return SearchResult{}, fmt.Errorf("search local store: select: %w", err)
	}
	defer rows.Close()
	var last keyset
	for rows.Next() {
		var ev []byte // Scan copies the TEXT value into a fresh slice.
		var k keyset
		if err := rows.Scan(&ev, &k.TS, &k.Cluster, &k.AuditID, &k.Stage, &k.ID); err != nil {
			return SearchResult{}, fmt.Errorf("search local store: scan: %w", err)
		}
		if len(res.Events) == limit {
			res.Cursor = last.encode()
			break
		}
		res.Events = append(res.Events, json.RawMessage(ev))
		last = k
	}
	if err := rows.Err(); err != nil {
		return SearchResult{}, fmt.Errorf("search local store: rows: %w", err)
	}
	return res, nil
}

func (s *Store) analyse(ctx context.Context, tx *sql.Tx, c *compiler, conds []string, sel *cql.Select) (SearchResult, error) {
	stmt, args, a, err := analysisStatement(c, conds, sel)
	if err != nil {
		return SearchResult{}, err
	}
	rows, err := tx.QueryContext(ctx, stmt, args...)
	if err != nil {
		return SearchResult{}, engineError(err)
	}
	defer rows.Close()
	res := SearchResult{Columns: a.columns, Rows: [][]any{}}
	for rows.Next() {
		vals := make([]any, len(a.columns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return SearchResult{}, fmt.Errorf("search local store: scan: %w", err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = string(b)
			}
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return SearchResult{}, engineError(err)
	}
	res.Total = len(res.Rows)
	return res, nil
}

// analysisStatement assembles the statement of an analysis: the compiled
// filter conditions (conds, arguments in c.args) and the SELECT.
func analysisStatement(c *compiler, conds []string, sel *cql.Select) (string, []any, *selectSQL, error) {
	// The SELECT list is compiled after the filter, but it comes first in
	// the statement: compile it into its own argument list.
	filterArgs := c.args
	c.args = nil
	a, err := c.analysis(sel)
	if err != nil {
		return "", nil, nil, err
	}
	selectArgs := c.args
	// Argument order follows the text: SELECT list, then filter, then the
	// analysis WHERE, GROUP BY, HAVING and ORDER BY, whose arguments were
	// compiled in that order after the list.
	nList := a.nListArgs
	args := append(append(append([]any{}, selectArgs[:nList]...), filterArgs...), selectArgs[nList:]...)
	where := strings.Join(conds, " AND ")
	if a.where != "" {
		where += " AND (" + a.where + ")"
	}
	stmt := "SELECT "
	if a.distinct {
		stmt += "DISTINCT "
	}
	stmt += a.list + " FROM events WHERE " + where
	if a.groupBy != "" {
		stmt += " GROUP BY " + a.groupBy
	}
	if a.having != "" {
		stmt += " HAVING " + a.having
	}
	if a.orderBy != "" {
		stmt += " ORDER BY " + a.orderBy
	}
	stmt += " LIMIT ?"
	args = append(args, a.limit)
	return stmt, args, a, nil
}

// resolveLookups runs the distinct-value walks of the filter and puts their
// results (JSON arrays of the matching values) in place of the placeholders.
func resolveLookups(ctx context.Context, tx *sql.Tx, args []any) error {
	for i, a := range args {
		l, ok := a.(*distinctLookup)
		if !ok {
			continue
		}
		var values string
		if err := tx.QueryRowContext(ctx, l.sql(), l.pattern, phraseArg(l.phrase)).Scan(&values); err != nil {
			return fmt.Errorf("search local store: distinct values of %s: %w", l.col, err)
		}
		args[i] = values
	}
	return nil
}

// resolveIDBounds puts the smallest and largest id of the events in
// [from, to) in place of the idBound placeholders (an empty range gives
// bounds that select nothing). One index-only walk of the range.
func resolveIDBounds(ctx context.Context, tx *sql.Tx, args []any, from, to time.Time) error {
	var lo, hi sql.NullInt64
	resolved := false
	for i, a := range args {
		b, ok := a.(idBound)
		if !ok {
			continue
		}
		if !resolved {
			q := "SELECT min(id), max(id) FROM events WHERE 1"
			var qa []any
			if !from.IsZero() {
				q += " AND stage_ts >= ?"
				qa = append(qa, from.UnixMilli())
			}
			if !to.IsZero() {
				q += " AND stage_ts < ?"
				qa = append(qa, to.UnixMilli())
			}
			if err := tx.QueryRowContext(ctx, q, qa...).Scan(&lo, &hi); err != nil {
				return fmt.Errorf("search local store: id range: %w", err)
			}
			resolved = true
		}
		switch {
		case !lo.Valid:
			args[i] = int64(0) // BETWEEN 0 AND 0: ids start at 1
		case b.max:
			args[i] = hi.Int64
		default:
			args[i] = lo.Int64
		}
	}
	return nil
}

// engineError turns SQLite's rejection of a well-formed analysis (an
// aggregate in WHERE, a GROUP BY that does not fit) into a caller error, and
// leaves I/O and other failures as internal errors.
func engineError(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == 1 { // SQLITE_ERROR: bad SQL
		msg := se.Error()
		return &InvalidSearchError{Param: "q", Msg: "the analysis part was rejected: " + msg}
	}
	return fmt.Errorf("search local store: analysis: %w", err)
}

// keyset is the position of an event in the result order, the content of a
// cursor. TS is nil for an event without stageTimestamp (those sort last).
// ID breaks ties: events under a reused auditID share cluster, auditID and
// stage (decision 0012).
type keyset struct {
	TS      *int64 `json:"t"`
	Cluster string `json:"c"`
	AuditID string `json:"a"`
	Stage   string `json:"s"`
	ID      int64  `json:"i"`
}

func (k keyset) encode() string {
	b, _ := json.Marshal(k) // strings and an integer: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (keyset, error) {
	var k keyset
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&k)
	}
	if err != nil || k.Cluster == "" || k.AuditID == "" || k.Stage == "" {
		return keyset{}, &InvalidSearchError{Param: "cursor", Msg: "not a cursor returned by this API"}
	}
	return k, nil
}

// after renders "comes after k in the result order" (stage_ts DESC NULLS
// LAST, then cluster, audit_id, stage, id ascending).
func (k keyset) after() (string, []any) {
	if k.TS == nil {
		return "(stage_ts IS NULL AND (cluster, audit_id, stage, id) > (?, ?, ?, ?))",
			[]any{k.Cluster, k.AuditID, k.Stage, k.ID}
	}
	return "(stage_ts < ? OR stage_ts IS NULL OR (stage_ts = ? AND (cluster, audit_id, stage, id) > (?, ?, ?, ?)))",
		[]any{*k.TS, *k.TS, k.Cluster, k.AuditID, k.Stage, k.ID}
}
