package group

import (
	"context"
	"log/slog"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// LocalSink writes to the embedded local store, whatever its engine.
type LocalSink struct {
	store  eventstore.Writer
	logger *slog.Logger
}

// NewLocalSink returns a Sink for store.
func NewLocalSink(store eventstore.Writer, logger *slog.Logger) *LocalSink {
	return &LocalSink{store: store, logger: logger}
}

// Sync makes what Write stored durable, for a store that is an
// eventstore.Syncer (nothing to do otherwise): the handler's Sync, before
// the group commits offsets.
func (s *LocalSink) Sync(ctx context.Context) error {
	if sy, ok := s.store.(eventstore.Syncer); ok {
		return sy.Sync(ctx)
	}
	return nil
}

// Name implements Sink.
func (s *LocalSink) Name() string { return "local" }

// Write implements Sink. The store is idempotent on (cluster, auditID,
// stage, content hash), so a redelivered batch only counts duplicates; a
// different event under a reused auditID is stored, marked and logged by
// the store (decision 0012).
func (s *LocalSink) Write(ctx context.Context, records []kafka.Record) error {
	values := make([][]byte, len(records))
	for i, r := range records {
		values[i] = r.Value
	}
	res, err := s.store.Write(ctx, values)
	if err != nil {
		return err
	}
	if res.Invalid > 0 {
		// The processor only writes valid events; an invalid one here was
		// written by something else. It cannot be stored, so say so loudly
		// rather than stall the partition on it forever.
		first := res.InvalidValues[0]
		s.logger.Error("records on the events topic are not processed events; skipped",
			"invalid", res.Invalid, "topic", records[0].Topic, "partition", records[0].Partition,
			"first_offset", records[0].Offset,
			"first_invalid_offset", records[first.Index].Offset, "first_invalid_reason", first.Reason)
	}
	return nil
}
