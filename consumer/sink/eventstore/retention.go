package eventstore

import (
	"context"
	"log/slog"
	"time"
)

// Pruner is the part of a Store that retention rounds use.
type Pruner interface {
	PruneStep(ctx context.Context, r Retention, now time.Time) (deleted int, more bool, err error)
	UsedBytes(ctx context.Context) (int64, error)
}

// RunRetention is Store.RunRetention for every engine: it prunes in steps
// until ctx ends; while a step finds work it goes on (pausing briefly so
// that the writers get in between steps), otherwise it sleeps r.Interval.
// Every round also measures the used bytes, so that
// auditpipe_localstore_used_bytes follows the store with or without
// limits. Errors are logged and retried next round: retention failing
// must never stop the consumer.
func RunRetention(ctx context.Context, p Pruner, r Retention, logger *slog.Logger) {
	r = r.WithDefaults()
	for {
		var n int
		var more bool
		var err error
		if r.MaxAge > 0 || r.MaxBytes > 0 {
			n, more, err = p.PruneStep(ctx, r, time.Now())
		}
		if !more && err == nil {
			_, err = p.UsedBytes(ctx)
		}
		if err != nil && ctx.Err() == nil {
			logger.Error("local store retention step failed; retrying next round", "err", err)
			more = false
		}
		if n > 0 {
			logger.Debug("local store retention", "deleted", n)
		}
		wait := r.Interval
		if more {
			wait = 10 * time.Millisecond // let the writers in between steps
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
