package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Limits of Query.Limit, the same as CLS's LIMIT.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Query selects events. Empty fields do not filter; all set fields must match
// (AND). String filters are exact, case-sensitive matches on the field.
type Query struct {
	Cluster   string // auditpipe.cluster
	Verb      string // verb
	User      string // user.username
	Resource  string // objectRef.resource
	Namespace string // objectRef.namespace
	// From and To bound stageTimestamp, half-open: From <= t < To, so that
	// consecutive windows neither overlap nor leave gaps. Zero = unbounded.
	From, To time.Time
	// Text is a full-text search over every value of the event (not the
	// keys): all words must occur, "quoted words" must occur as a phrase,
	// and a trailing * matches a prefix (kube*). Matching is
	// case-insensitive and on whole tokens, split at punctuation, so
	// "kube-system" finds system:serviceaccount:kube-system:default.
	Text string
	// Limit is the page size: DefaultLimit when <= 0, at most MaxLimit.
	Limit int
}

// QueryResult is one page of matching events.
type QueryResult struct {
	// Events are the stored ProcessedEvent JSON documents, newest first by
	// stageTimestamp, then by cluster, auditID and stage for a stable order.
	Events []json.RawMessage
	// Total counts every matching event, not just this page.
	Total int
}

// Query returns the newest events matching q and how many match in all. The
// page and the total come from the same snapshot of the database.
func (s *Store) Query(ctx context.Context, q Query) (QueryResult, error) {
	start := time.Now()
	defer func() { s.metrics.queryDuration.Observe(time.Since(start).Seconds()) }()

	where, args := q.where()
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	tx, err := s.readers.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return QueryResult{}, fmt.Errorf("query local store: begin: %w", err)
	}
	// Read-only: rolling back just releases the snapshot.
	defer func() { _ = tx.Rollback() }()

	res := QueryResult{Events: []json.RawMessage{}}
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM events"+where, args...).Scan(&res.Total); err != nil {
		return QueryResult{}, fmt.Errorf("query local store: count: %w", err)
	}
	if res.Total == 0 {
		return res, nil
	}
	rows, err := tx.QueryContext(ctx,
		"SELECT event FROM events"+where+" ORDER BY stage_ts DESC, cluster, audit_id, stage, id LIMIT ?",
		append(args, limit)...)
	if err != nil {
		return QueryResult{}, fmt.Errorf("query local store: select: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev []byte // Scan copies the TEXT value into a fresh slice.
		if err := rows.Scan(&ev); err != nil {
			return QueryResult{}, fmt.Errorf("query local store: scan: %w", err)
		}
		res.Events = append(res.Events, json.RawMessage(ev))
	}
	if err := rows.Err(); err != nil {
		return QueryResult{}, fmt.Errorf("query local store: rows: %w", err)
	}
	return res, nil
}

// where renders q's filters as a WHERE clause (empty when there is none)
// with bound arguments; no user input is ever spliced into the SQL.
func (q Query) where() (string, []any) {
	var conds []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	eq("cluster", q.Cluster)
	eq("verb", q.Verb)
	eq("username", q.User)
	eq("resource", q.Resource)
	eq("namespace", q.Namespace)
	if !q.From.IsZero() {
		conds = append(conds, "stage_ts >= ?")
		args = append(args, q.From.UnixMilli())
	}
	if !q.To.IsZero() {
		conds = append(conds, "stage_ts < ?")
		args = append(args, q.To.UnixMilli())
	}
	if m := ftsMatch(q.Text); m != "" {
		conds = append(conds, "id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)")
		args = append(args, m)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ftsMatch turns free text into an FTS5 query in which every word or quoted
// phrase is a quoted FTS5 string, so that characters that are FTS5 syntax
// (-, :, ^, parentheses, AND/OR/NOT) are searched for, not interpreted. The
// CLS query language will replace this with its own compiler.
func ftsMatch(text string) string {
	var terms []string
	add := func(term string, prefix bool) {
		term = strings.TrimSpace(term)
		if term == "" {
			return
		}
		t := `"` + strings.ReplaceAll(term, `"`, `""`) + `"`
		if prefix {
			t += "*"
		}
		terms = append(terms, t)
	}
	for rest := strings.TrimSpace(text); rest != ""; rest = strings.TrimSpace(rest) {
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 { // unbalanced quote: the rest is the phrase
				add(rest[1:], false)
				break
			}
			phrase := rest[1 : 1+end]
			rest = rest[end+2:]
			prefix := strings.HasPrefix(rest, "*")
			if prefix {
				rest = rest[1:]
			}
			add(phrase, prefix)
			continue
		}
		word, after, _ := strings.Cut(rest, " ")
		if i := strings.IndexAny(word, "\t\r\n"); i >= 0 {
			word, after = rest[:i], rest[i+1:]
		}
		rest = after
		prefix := strings.HasSuffix(word, "*")
		add(strings.TrimRight(word, "*"), prefix)
	}
	return strings.Join(terms, " AND ")
}
