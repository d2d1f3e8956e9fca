package vlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// ErrNotImplemented is what the parts of eventstore.Store that later steps
// of decision 0026's plan build return meanwhile.
var ErrNotImplemented = errors.New("not implemented in vlstore yet")

// RunRetention is step 2's remainder (per-day partitions dropped by age,
// MaxDiskSpaceUsageBytes by size).
func (s *Store) RunRetention(ctx context.Context, _ eventstore.Retention) {
	s.logger.Error("vlstore: retention is not implemented yet; the store grows without bound")
	<-ctx.Done()
}

// PruneStep: see RunRetention.
func (s *Store) PruneStep(context.Context, eventstore.Retention, time.Time) (int, bool, error) {
	return 0, false, fmt.Errorf("vlstore: PruneStep: %w", ErrNotImplemented)
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

// UsedBytes is the compressed size of the stored data and its index, as
// the storage reports it (in-memory parts included). Not yet the
// used-bytes metric: that comes with retention.
func (s *Store) UsedBytes(context.Context) (int64, error) {
	var st logstorage.StorageStats
	s.vl.UpdateStats(&st)
	p := st.PartitionStats
	return int64(p.CompressedInmemorySize + p.CompressedSmallPartSize + p.CompressedBigPartSize + p.IndexdbSizeBytes), nil
}
