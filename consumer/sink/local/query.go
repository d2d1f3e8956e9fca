package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// Query returns the newest events matching q and how many match in all. The
// page and the total come from the same snapshot of the database.
func (s *Store) Query(ctx context.Context, q Query) (QueryResult, error) {
	start := time.Now()
	defer func() { s.metrics.queryDuration.Observe(time.Since(start).Seconds()) }()

	where, args := queryWhere(q)
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

// queryWhere renders q's filters as a WHERE clause (empty when there is none)
// with bound arguments; no user input is ever spliced into the SQL.
func queryWhere(q Query) (string, []any) {
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
		conds = append(conds, "id IN (SELECT rowid FROM events_words WHERE events_words MATCH ?)")
		args = append(args, m)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ftsMatch turns free text into an FTS5 query on the full-text column:
// every word or "quoted phrase" must occur, with CLS's words (cql.Words); a
// word's trailing * makes it a prefix. Words are encoded (appendFTSWord), so
// FTS5 syntax in the text is searched for, never interpreted. Text with no
// word at all (only delimiters) matches nothing.
func ftsMatch(text string) string {
	var terms []string
	add := func(term string, phrase bool) {
		pat := cql.CompilePattern(term, phrase)
		if len(pat.Words) == 0 {
			return
		}
		if phrase {
			// Quoted: every word literal.
			for i := range pat.Words {
				pat.Words[i].Wild = false
			}
		}
		if q, _ := ftsQuery("text", "", pat); q != "" {
			terms = append(terms, q)
		}
	}
	for rest := strings.TrimSpace(text); rest != ""; rest = strings.TrimSpace(rest) {
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 { // unbalanced quote: the rest is the phrase
				add(rest[1:], true)
				break
			}
			add(rest[1:1+end], true)
			rest = rest[end+2:]
			continue
		}
		word, after, _ := strings.Cut(rest, " ")
		if i := strings.IndexAny(word, "\t\r\n"); i >= 0 {
			word, after = rest[:i], rest[i+1:]
		}
		rest = after
		add(word, false)
	}
	if len(terms) == 0 && strings.TrimSpace(text) != "" {
		return `"zz"` // no word: matches nothing (no encoded word or break is "zz")
	}
	return strings.Join(terms, " AND ")
}
