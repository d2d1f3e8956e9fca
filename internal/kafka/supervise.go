package kafka

import (
	"context"
	"log/slog"
	"time"
)

// Supervise runs g with h until ctx is canceled. When Run returns an error
// (a handler failure, a broker outage) it logs it, waits with exponential
// backoff (from 100ms up to max) and runs again: the uncommitted records
// are delivered again, so a transient failure delays records but never
// loses them. It returns when ctx is done.
func Supervise(ctx context.Context, g GroupConsumer, h Handler, max time.Duration, logger *slog.Logger) {
	SuperviseFunc(ctx, func(ctx context.Context) error { return g.Run(ctx, h) }, max, logger)
}

// SuperviseFunc is Supervise for a component whose Run wraps the group's
// (for example one that also watches its configuration files).
func SuperviseFunc(ctx context.Context, run func(context.Context) error, max time.Duration, logger *slog.Logger) {
	if max <= 0 {
		max = 10 * time.Second
	}
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// Run returned without cancellation; treat it like an error so
			// the group is joined again rather than silently abandoned.
			logger.Warn("consumer group member stopped; rejoining")
		} else {
			logger.Error("consumer group member failed; records since the last commit will be delivered again", "err", err, "retry_in", backoff)
		}
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, max)
	}
}
