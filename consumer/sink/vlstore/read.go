package vlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// ErrNotImplemented is what the parts of eventstore.Store that later steps
// of decision 0026's plan build return meanwhile.
var ErrNotImplemented = errors.New("not implemented in vlstore yet")

// Query is step 3 of the plan (field filters and full text on LogsQL).
func (s *Store) Query(context.Context, eventstore.Query) (eventstore.QueryResult, error) {
	return eventstore.QueryResult{}, fmt.Errorf("vlstore: Query: %w", ErrNotImplemented)
}

// Search is step 3 of the plan (the CQL → LogsQL compiler and the | SQL
// translation).
func (s *Store) Search(context.Context, eventstore.SearchRequest) (eventstore.SearchResult, error) {
	return eventstore.SearchResult{}, fmt.Errorf("vlstore: Search: %w", ErrNotImplemented)
}

// Clusters returns the stream field's values (every event's stream is its
// cluster).
func (s *Store) Clusters(ctx context.Context) ([]string, error) {
	q, err := logstorage.ParseQuery("*")
	if err != nil {
		return nil, fmt.Errorf("vlstore: clusters: %w", err)
	}
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
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
