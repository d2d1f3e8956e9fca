package vlstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
)

// Clusters returns the stream field's values (every event's stream is its
// cluster).
func (s *Store) Clusters(ctx context.Context) ([]string, error) {
	q, err := logstorage.ParseQuery("*")
	if err != nil {
		return nil, fmt.Errorf("vlstore: clusters: %w", err)
	}
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	s.visible()
	vals, err := s.vl.GetStreamFieldValues(qctx, keyCluster, "", 0)
	if err != nil {
		return nil, fmt.Errorf("vlstore: clusters: %w", err)
	}
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		out = append(out, v.Value)
	}
	slices.Sort(out)
	return out, nil
}
