// Package eventstopic reads a whole processed-events topic for the
// tests that count what the pipeline wrote under faults (deploy/local/
// faults on 3 brokers, deploy/local/fleet on a SASL_SSL fleet).
package eventstopic

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// Identity is the de-duplication key of a processed event.
type Identity struct{ Cluster, AuditID, Stage string }

// ReadAll reads gc's topic from the start with a group of its own (gc's
// Group gets a unique suffix) until it has at least want identities and
// nothing new came for 3 seconds, within 2 minutes. It returns the copies
// of each identity without the pipeline's own fields (which differ by
// processing time).
func ReadAll(t testing.TB, gc kafka.GroupConfig, want int) map[Identity][]schemas.Event {
	t.Helper()
	gc.Group += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	gc.SessionTimeout = 6 * time.Second // Apache Kafka's minimum
	g, err := saramakafka.NewGroup(gc)
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	copies := map[Identity][]schemas.Event{}
	last := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range b.Records {
				var e schemas.ProcessedEvent
				if err := json.Unmarshal(r.Value, &e); err != nil {
					return fmt.Errorf("events topic %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
				}
				id := Identity{e.Pipeline.Cluster, e.AuditID, e.Stage}
				copies[id] = append(copies[id], e.Event)
			}
			last = time.Now()
			return nil
		}))
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("reading the events topic: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		mu.Lock()
		n, quiet := len(copies), time.Since(last) > 3*time.Second
		mu.Unlock()
		if n >= want && quiet {
			break
		}
		require.True(t, time.Now().Before(deadline), "read %d of %d identities from %v in 2 minutes", n, want, gc.Topics)
	}
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	return copies
}
