package cli

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// AwaitKafka calls probe, a cheap request to the brokers, until it
// succeeds or ctx ends, backing off from 100ms to 10s and logging each
// failure (the adapters' errors name the broker). Until then the "kafka"
// readiness check reports the last failure. Stages call it before they
// build their clients, several of which connect when created: a wrong
// password or an unreachable cluster then leaves a running, unready
// process that says why, not a crash loop, and picks up a corrected
// password file (read at every attempt) by itself.
func AwaitKafka(ctx context.Context, env Env, brokers []string, probe func(context.Context) error) error {
	var mu sync.Mutex
	last := errors.New("not connected yet")
	env.Health.Add("kafka", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return last
	})
	backoff := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := probe(pctx)
		cancel()
		mu.Lock()
		last = err
		mu.Unlock()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka brokers %v: %w", brokers, ctx.Err())
		}
		env.Logger.Error("kafka not reachable; retrying", "brokers", brokers, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka brokers %v: %w", brokers, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
