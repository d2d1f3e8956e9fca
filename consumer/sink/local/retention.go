package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// Values of the reason label of auditpipe_localstore_pruned_events_total.
const (
	pruneAge  = "age"
	pruneSize = "size"
)

// RunRetention prunes in steps until ctx ends (eventstore.RunRetention):
// each step holds the write lock for at most StepRows deletions, and every
// round measures the pages in use, so auditpipe_localstore_used_bytes
// follows the file with or without limits.
func (s *Store) RunRetention(ctx context.Context, r Retention) {
	eventstore.RunRetention(ctx, s, r, s.logger)
}

// PruneStep deletes at most r.StepRows events: first those older than
// MaxAge, else, when the store is over MaxBytes, the oldest ones. more
// reports whether another step would find work.
func (s *Store) PruneStep(ctx context.Context, r Retention, now time.Time) (deleted int, more bool, err error) {
	r = r.WithDefaults()
	if r.MaxAge > 0 {
		n, err := s.deleteOldest(ctx, r.StepRows, now.Add(-r.MaxAge).UnixMilli())
		if err != nil {
			return 0, false, fmt.Errorf("prune by age: %w", err)
		}
		s.metrics.pruned.WithLabelValues(pruneAge).Add(float64(n))
		if n > 0 {
			return n, n == r.StepRows, nil
		}
	}
	if r.MaxBytes > 0 {
		used, err := s.UsedBytes(ctx)
		if err != nil {
			return 0, false, fmt.Errorf("prune by size: %w", err)
		}
		if used <= r.MaxBytes {
			return 0, false, nil
		}
		limit, err := s.sizeStepRows(ctx, used-r.MaxBytes, used, r.StepRows)
		if err != nil {
			return 0, false, fmt.Errorf("prune by size: %w", err)
		}
		n, err := s.deleteOldest(ctx, limit, -1)
		if err != nil {
			return 0, false, fmt.Errorf("prune by size: %w", err)
		}
		s.metrics.pruned.WithLabelValues(pruneSize).Add(float64(n))
		return n, n > 0, nil
	}
	return 0, false, nil
}

// sizeStepRows is how many of the oldest events to delete to free about
// excess bytes, at most stepRows: a fixed StepRows would delete a whole
// step's worth however little the store is over, emptying a small store.
// The average event size comes from the id range (ids grow with inserts
// and retention deletes the oldest, so the range is about the row count
// without counting them). Pages free up only once empty, so the measure
// after the step may still be over; the next step deletes a little more.
func (s *Store) sizeStepRows(ctx context.Context, excess, used int64, stepRows int) (int, error) {
	var rows sql.NullInt64
	if err := s.writer.QueryRowContext(ctx, `SELECT max(id) - min(id) + 1 FROM events`).Scan(&rows); err != nil {
		return 0, fmt.Errorf("estimate rows: %w", err)
	}
	if !rows.Valid || rows.Int64 <= 0 {
		return stepRows, nil
	}
	perRow := max(used/rows.Int64, 1)
	return int(min(excess/perRow+1, int64(stepRows))), nil
}

// UsedBytes is the size of the pages in use: what retention by size
// bounds.
func (s *Store) UsedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	for _, q := range []struct {
		sql string
		v   *int64
	}{{"PRAGMA page_count", &pages}, {"PRAGMA freelist_count", &free}, {"PRAGMA page_size", &size}} {
		if err := s.writer.QueryRowContext(ctx, q.sql).Scan(q.v); err != nil {
			return 0, fmt.Errorf("%s: %w", q.sql, err)
		}
	}
	used := (pages - free) * size
	s.metrics.usedBytes.Set(float64(used))
	return used, nil
}

// deleteOldest deletes up to limit of the oldest events, only those with
// stage_ts < before unless before is -1, in one transaction, from both the
// table and the full-text index.
func (s *Store) deleteOldest(ctx context.Context, limit int, before int64) (n int, err error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// events_time orders by stage_ts; NULLs (no stageTimestamp) sort first,
	// so by size they go first, and by age they are never "older".
	q := `SELECT id FROM events ORDER BY stage_ts ASC LIMIT ?`
	args := []any{limit}
	if before >= 0 {
		q = `SELECT id FROM events WHERE stage_ts < ? ORDER BY stage_ts ASC LIMIT ?`
		args = []any{before, limit}
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("select: %w", err)
	}
	ids := make([]int64, 0, limit)
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("scan: %w", err)
		}
		ids = append(ids, id)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("select: %w", err)
	}
	if len(ids) == 0 {
		return 0, tx.Rollback()
	}
	delText, err := tx.PrepareContext(ctx, `DELETE FROM events_words WHERE rowid = ?`)
	if err != nil {
		return 0, fmt.Errorf("prepare: %w", err)
	}
	defer delText.Close()
	delEvent, err := tx.PrepareContext(ctx, `DELETE FROM events WHERE id = ?`)
	if err != nil {
		return 0, fmt.Errorf("prepare: %w", err)
	}
	defer delEvent.Close()
	for _, id := range ids {
		if _, err := delText.ExecContext(ctx, id); err != nil {
			return 0, fmt.Errorf("delete full-text row %d: %w", id, err)
		}
		if _, err := delEvent.ExecContext(ctx, id); err != nil {
			return 0, fmt.Errorf("delete event %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return len(ids), nil
}
