package local

import (
	"context"
	"fmt"
)

// Clusters returns the distinct auditpipe.cluster values in the store,
// sorted. It walks the (cluster, stage_ts) index one seek per distinct
// value (a recursive loose index scan), so it costs the number of clusters,
// not the number of events. The console's cluster selector uses it next to
// the fleet registry, which does not know clusters that send without an
// entry (such as make demo's).
func (s *Store) Clusters(ctx context.Context) ([]string, error) {
	const q = `WITH RECURSIVE c(v) AS (
		SELECT min(cluster) FROM events
		UNION ALL
		SELECT (SELECT min(cluster) FROM events WHERE cluster > c.v) FROM c WHERE c.v IS NOT NULL
	) SELECT v FROM c WHERE v IS NOT NULL`
	rows, err := s.readers.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("list clusters: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	return out, nil
}
