package kafkago_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

type env struct {
	brokers []string
	admin   kafka.Admin
	prod    kafka.Producer
	f       kafkatest.Factory
}

func setup(tb testing.TB) *env {
	tb.Helper()
	f := factory()
	brokers := kafkatest.Brokers(tb)
	return &env{
		brokers: brokers,
		admin:   f.NewAdmin(tb, brokers),
		prod:    f.NewProducer(tb, kafka.ProducerConfig{Brokers: brokers}),
		f:       f,
	}
}

func (e *env) topic(tb testing.TB, partitions int32) string {
	tb.Helper()
	name := strings.NewReplacer("/", ".", " ", "_").Replace(tb.Name())
	if os.Getenv(kafkatest.BrokersEnv) != "" {
		// An external cluster outlives the run: reruns need topics (and
		// so groups) of their own.
		name += "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(tb, e.admin.EnsureTopics(ctx, kafka.TopicSpec{Name: name, Partitions: partitions, ReplicationFactor: 1}))
	return name
}

func (e *env) group(tb testing.TB, group, topic string) kafka.GroupConsumer {
	return e.f.NewGroup(tb, kafka.GroupConfig{
		Brokers:        e.brokers,
		Group:          group + "." + topic,
		Topics:         []string{topic},
		MaxBatch:       50,
		MaxWait:        20 * time.Millisecond,
		SessionTimeout: sessionTimeout(),
	})
}

// sessionTimeout is short on the in-process broker, so that tests that
// wait for a dead member are quick; Apache Kafka refuses anything below
// its group.min.session.timeout.ms, 6 s by default.
func sessionTimeout() time.Duration {
	if os.Getenv(kafkatest.BrokersEnv) != "" {
		return 6 * time.Second
	}
	return time.Second
}

func records(topic string, n, keys int) []kafka.Record {
	out := make([]kafka.Record, n)
	for i := range out {
		out[i] = kafka.Record{
			Topic:   topic,
			Key:     fmt.Appendf(nil, "key-%d", i%keys),
			Value:   fmt.Appendf(nil, "value-%d", i),
			Headers: []kafka.Header{{Key: "seq", Value: fmt.Appendf(nil, "%d", i)}, {Key: "empty", Value: nil}},
		}
	}
	return out
}

// collector records every delivered record and lets a test wait for a
// number of distinct values.
type collector struct {
	mu   sync.Mutex
	all  []kafka.Record
	seen map[string]int
	cond chan struct{}
}

func newCollector() *collector {
	return &collector{seen: map[string]int{}, cond: make(chan struct{}, 1)}
}

func (c *collector) add(b kafka.Batch) {
	c.mu.Lock()
	for _, r := range b.Records {
		c.all = append(c.all, r)
		c.seen[string(r.Value)]++
	}
	c.mu.Unlock()
	select {
	case c.cond <- struct{}{}:
	default:
	}
}

func (c *collector) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *collector) waitDistinct(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.After(20 * time.Second)
	for c.distinct() < n {
		select {
		case <-c.cond:
		case <-deadline:
			tb.Fatalf("got %d distinct records, want %d", c.distinct(), n)
		}
	}
}

func runAsync(ctx context.Context, g kafka.GroupConsumer, h kafka.Handler) <-chan error {
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, h) }()
	return done
}

func waitRun(tb testing.TB, done <-chan error) error {
	tb.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		tb.Fatal("Run did not return")
		return nil
	}
}

func committedTotal(tb testing.TB, e *env, group, topic string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := e.admin.CommittedOffsets(ctx, group+"."+topic, topic)
	require.NoError(tb, err)
	var total int64
	for _, o := range offs {
		total += o
	}
	return total
}

func TestRoundTripOrderAndShutdownCommit(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 4)
	const n, keys = 300, 7
	ctx := context.Background()
	require.NoError(t, e.prod.Produce(ctx, records(topic, n, keys)...))

	c := newCollector()
	runCtx, cancel := context.WithCancel(ctx)
	done := runAsync(runCtx, e.group(t, "rt", topic), kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		c.add(b)
		return nil
	}))
	c.waitDistinct(t, n)
	cancel()
	require.NoError(t, waitRun(t, done))

	require.Len(t, c.all, n, "no duplicates without rebalances")
	lastSeq := map[string]int{}
	keyPartition := map[string]int32{}
	for _, r := range c.all {
		var seq int
		_, err := fmt.Sscanf(string(r.HeaderValue("seq")), "%d", &seq)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("value-%d", seq), string(r.Value))
		require.Equal(t, fmt.Sprintf("key-%d", seq%keys), string(r.Key))
		require.Equal(t, topic, r.Topic)
		require.False(t, r.Time.IsZero())
		k := string(r.Key)
		if p, ok := keyPartition[k]; ok {
			require.Equal(t, p, r.Partition, "key %s on one partition", k)
		}
		keyPartition[k] = r.Partition
		if last, ok := lastSeq[k]; ok {
			require.Greater(t, seq, last, "order of key %s", k)
		}
		lastSeq[k] = seq
	}
	require.Equal(t, int64(n), committedTotal(t, e, "rt", topic))
}

func TestHandlerErrorStopsAndRedelivers(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 4)
	const n = 40
	ctx := context.Background()
	require.NoError(t, e.prod.Produce(ctx, records(topic, n, 40)...))

	boom := errors.New("boom")
	err := waitRun(t, runAsync(ctx, e.group(t, "redeliver", topic), kafka.HandlerFunc(func(context.Context, kafka.Batch) error {
		return boom
	})))
	require.ErrorIs(t, err, boom)
	require.Equal(t, int64(0), committedTotal(t, e, "redeliver", topic))

	c := newCollector()
	runCtx, cancel := context.WithCancel(ctx)
	done := runAsync(runCtx, e.group(t, "redeliver", topic), kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		c.add(b)
		return nil
	}))
	c.waitDistinct(t, n)
	cancel()
	require.NoError(t, waitRun(t, done))
	require.Equal(t, int64(n), committedTotal(t, e, "redeliver", topic))
}

func TestRevokedBatchIsNotCommitted(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 1)
	const n = 10
	ctx := context.Background()
	require.NoError(t, e.prod.Produce(ctx, records(topic, n, 1)...))

	blocked := make(chan struct{})
	var once sync.Once
	causes := make(chan error, 1)
	aCtx, aCancel := context.WithCancel(ctx)
	defer aCancel()
	c := newCollector()
	a := runAsync(aCtx, e.group(t, "revoke", topic), kafka.HandlerFunc(func(ctx context.Context, b kafka.Batch) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(blocked)
			<-ctx.Done() // revoked when the second member joins
			causes <- context.Cause(ctx)
			return nil // must not be committed
		}
		c.add(b)
		return nil
	}))
	<-blocked

	bCtx, bCancel := context.WithCancel(ctx)
	defer bCancel()
	b := runAsync(bCtx, e.group(t, "revoke", topic), kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		c.add(b)
		return nil
	}))
	c.waitDistinct(t, n)
	require.Error(t, <-causes)
	// B commits right after its handler returns, so the last commit may
	// land a moment after the collector saw the last record.
	require.Eventually(t, func() bool { return committedTotal(t, e, "revoke", topic) == int64(n) },
		30*time.Second, 50*time.Millisecond, "committed offsets never reached %d", n)
	aCancel()
	bCancel()
	require.NoError(t, waitRun(t, a))
	require.NoError(t, waitRun(t, b))
}

func TestCloseStopsRunAndIsIdempotent(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 2)
	g := e.group(t, "close", topic)
	started := make(chan struct{})
	require.NoError(t, e.prod.Produce(context.Background(), records(topic, 1, 1)...))
	done := runAsync(context.Background(), g, kafka.HandlerFunc(func(context.Context, kafka.Batch) error {
		close(started)
		return nil
	}))
	<-started
	require.NoError(t, g.Close())
	require.NoError(t, waitRun(t, done))
	require.NoError(t, g.Close())
	require.Error(t, g.Run(context.Background(), kafka.HandlerFunc(func(context.Context, kafka.Batch) error { return nil })))
	require.Equal(t, int64(1), committedTotal(t, e, "close", topic))
}

func TestAdminAndProducerErrors(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	spec := kafka.TopicSpec{Name: "admin.topic", Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "3600000"}}
	require.NoError(t, e.admin.EnsureTopics(ctx, spec))
	require.NoError(t, e.admin.EnsureTopics(ctx, spec, kafka.TopicSpec{Name: "admin.other", Partitions: 1}))

	offs, err := e.admin.CommittedOffsets(ctx, "nobody", "admin.topic")
	require.NoError(t, err)
	require.Empty(t, offs)

	err = e.prod.Produce(ctx, kafka.Record{Topic: "no.such.topic", Value: []byte("x")})
	require.Error(t, err)
	require.Contains(t, err.Error(), "no.such.topic")
	t.Log(err)

	big := kafka.Record{Topic: "admin.topic", Value: make([]byte, 2<<20)}
	err = e.prod.Produce(ctx, big)
	require.Error(t, err)
	require.Contains(t, err.Error(), "admin.topic")
	t.Log(err)
}

// A topic created by another client after the producer cached the cluster
// metadata becomes writable without recreating the producer.
func TestProduceToTopicCreatedLater(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	name := e.topic(t, 1) // warm the producer's metadata cache before "late" exists
	require.NoError(t, e.prod.Produce(ctx, records(name, 1, 1)...))

	late := kafka.Record{Topic: name + ".late", Value: []byte("v")}
	require.Error(t, e.prod.Produce(ctx, late))
	require.NoError(t, e.admin.EnsureTopics(ctx, kafka.TopicSpec{Name: late.Topic, Partitions: 1}))
	require.NoError(t, e.prod.Produce(ctx, late))
}
