// Package testkit holds the producer's test helpers: per-test topics on a
// real broker, a broker that can be stopped and restarted at the same
// address, and a reader that collects what reached a topic.
package testkit

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/schemas"
)

// Topics returns topic names unique to the test, created on brokers.
func Topics(tb testing.TB, brokers []string) schemas.Topics {
	tb.Helper()
	n := strings.NewReplacer("/", ".", " ", "_").Replace(tb.Name()) + "." + time.Now().Format("150405.000000000")
	t := schemas.Topics{Raw: "raw." + n, Events: "events." + n, DLQ: "dlq." + n}
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(tb, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(tb, admin.EnsureTopics(ctx,
		kafka.TopicSpec{Name: t.Raw, Partitions: 4, ReplicationFactor: 1},
		kafka.TopicSpec{Name: t.DLQ, Partitions: 1, ReplicationFactor: 1}))
	return t
}

// FreePort returns a port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartBrokerAt starts an in-process broker on port persisting to dir,
// retrying while the port is still held by a broker that just stopped.
// The caller closes it.
func StartBrokerAt(tb testing.TB, port int, dir string) *embedded.Broker {
	tb.Helper()
	var err error
	for range 50 {
		var b *embedded.Broker
		if b, err = embedded.Start(embedded.Config{Ports: []int{port}, DataDir: dir}); err == nil {
			return b
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(tb, err)
	return nil
}

// Collect reads topic from the beginning until done (called with all
// records so far) returns true or timeout passes, and returns the records.
func Collect(tb testing.TB, brokers []string, topic string, timeout time.Duration, done func([]kafka.Record) bool) []kafka.Record {
	tb.Helper()
	g, err := kafkago.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "collect." + topic + time.Now().Format(".150405.000000000"), Topics: []string{topic}})
	require.NoError(tb, err)
	defer g.Close()
	var mu sync.Mutex
	var got []kafka.Record
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, b.Records...)
		if done(got) {
			cancel()
		}
		return nil
	}))
	mu.Lock()
	defer mu.Unlock()
	return got
}

// AtLeast is a Collect condition: n records.
func AtLeast(n int) func([]kafka.Record) bool {
	return func(r []kafka.Record) bool { return len(r) >= n }
}

// Distinct counts records by key: the number of distinct keys.
func Distinct(records []kafka.Record) map[string]int {
	m := map[string]int{}
	for _, r := range records {
		m[string(r.Key)]++
	}
	return m
}
