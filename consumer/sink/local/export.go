package local

import (
	"context"
	"fmt"
	"strconv"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

var _ eventstore.Exporter = (*Store)(nil)

// Export returns up to max stored events after position after (""
// the first), in the order they were stored (row id), and the position
// of the last one: one keyset seek on the primary key per page, so
// paging through a store of millions costs its size, not its square.
// The values are the events as stored (reused copies with their
// auditpipe.auditIDReused marker). The position is the row id as text.
func (s *Store) Export(ctx context.Context, after string, max int) ([][]byte, string, error) {
	var from int64
	if after != "" {
		var err error
		if from, err = strconv.ParseInt(after, 10, 64); err != nil {
			return nil, "", fmt.Errorf("export: position %q: not a row id", after)
		}
	}
	if max <= 0 {
		return nil, after, nil
	}
	rows, err := s.readers.QueryContext(ctx, `SELECT id, event FROM events WHERE id > ? ORDER BY id LIMIT ?`, from, max)
	if err != nil {
		return nil, "", fmt.Errorf("export after row %d: %w", from, err)
	}
	defer rows.Close()
	var out [][]byte
	last := from
	for rows.Next() {
		var v []byte
		if err := rows.Scan(&last, &v); err != nil {
			return nil, "", fmt.Errorf("export after row %d: %w", from, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("export after row %d: %w", from, err)
	}
	if len(out) == 0 {
		return nil, after, nil
	}
	return out, strconv.FormatInt(last, 10), nil
}

// Count returns how many events the store holds (eventstore.Exporter).
func (s *Store) Count(ctx context.Context) (int64, error) {
	var n int64
	if err := s.readers.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}
