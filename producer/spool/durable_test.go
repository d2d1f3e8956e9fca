package spool

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
)

// freePort returns a port that was free a moment ago, so a broker can be
// stopped and started again at the same address.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startBroker(t testing.TB, port int, dir string) *embedded.Broker {
	t.Helper()
	var b *embedded.Broker
	var err error
	// The port may linger briefly after the previous broker closed.
	for range 50 {
		if b, err = embedded.Start(embedded.Config{Ports: []int{port}, DataDir: dir}); err == nil {
			return b
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	return nil
}

func ensureTopic(t testing.TB, brokers []string, topic string) {
	t.Helper()
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 4, ReplicationFactor: 1}))
}

// readUntil reads topic from the start until done says so or a minute
// passed, returning the values per key in offset order.
func readUntil(t testing.TB, brokers []string, topic string, done func(map[string][]string) bool) map[string][]string {
	t.Helper()
	g, err := kafkago.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "read." + topic + time.Now().Format(".150405.000000"), Topics: []string{topic}})
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	got := map[string][]string{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Records {
			got[string(r.Key)] = append(got[string(r.Key)], string(r.Value))
		}
		if done(got) {
			cancel()
		}
		return nil
	}))
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestBrokerOutageUnderLoad stops the broker while four writers keep
// producing through Durable, restarts it at the same address, and checks
// that every batch Durable acknowledged reaches Kafka, that batches were
// spooled meanwhile, and that the spool drains to empty.
func TestBrokerOutageUnderLoad(t *testing.T) {
	port, dataDir := freePort(t), t.TempDir()
	broker := startBroker(t, port, dataDir)
	t.Cleanup(func() { broker.Close() })
	brokers := broker.Addrs()
	const topic = "raw"
	ensureTopic(t, brokers, topic)

	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	sp, err := Open(Config{Dir: t.TempDir(), MaxBytes: 64 << 20, SegmentBytes: 1 << 20}, nil)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	cfg := DefaultDurableConfig()
	cfg.KafkaTimeout, cfg.MaxBackoff = time.Second, 300*time.Millisecond
	d, err := NewDurable(cfg, prod, sp, reg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	d.Start()
	t.Cleanup(func() { _ = d.Close() })

	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				recs := make([]kafka.Record, 20)
				for j := range recs {
					recs[j] = kafka.Record{Topic: topic, Key: fmt.Appendf(nil, "w%d-b%d-r%d", w, i, j), Value: []byte(`{"x":1}`)}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := d.Produce(ctx, recs...)
				cancel()
				if err != nil {
					continue // not acknowledged: the sender would retry
				}
				mu.Lock()
				for _, r := range recs {
					acked[string(r.Key)] = true
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	broker.Close()
	time.Sleep(2500 * time.Millisecond)
	require.Positive(t, d.spool.Len(), "with the broker down, batches are spooled")
	require.NoError(t, d.Ready(context.Background()), "spooling with room to spare is ready")
	broker = startBroker(t, port, dataDir)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	require.Eventually(t, func() bool { return d.spool.Len() == 0 }, 40*time.Second, 50*time.Millisecond, "the spool drains")
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	got := readUntil(t, brokers, topic, func(got map[string][]string) bool {
		for k := range acked {
			if len(got[k]) == 0 {
				return false
			}
		}
		return true
	})
	for k := range acked {
		require.NotEmpty(t, got[k], "acknowledged record %s is on the topic", k)
	}
	require.Positive(t, testutil.ToFloat64(d.metrics.produceErrors))
	require.Positive(t, testutil.ToFloat64(d.metrics.spooled))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	t.Logf("acknowledged %d records, spooled %.0f batches", n, testutil.ToFloat64(d.metrics.spooled))
}

// TestSpoolOrderIsKept checks that while the spool holds batches, new
// batches queue behind them even when Kafka is back, so spooled batches
// reach Kafka in the order they were acknowledged.
func TestSpoolOrderIsKept(t *testing.T) {
	port, dataDir := freePort(t), t.TempDir()
	broker := startBroker(t, port, dataDir)
	t.Cleanup(func() { broker.Close() })
	brokers := broker.Addrs()
	ensureTopic(t, brokers, "raw")
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	sp, err := Open(Config{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 1 << 20}, nil)
	require.NoError(t, err)
	cfg := DefaultDurableConfig()
	cfg.KafkaTimeout = 500 * time.Millisecond
	d, err := NewDurable(cfg, prod, sp, nil, nil)
	require.NoError(t, err)
	// Not started: nothing drains, so the spool's behaviour is visible.
	broker.Close()
	one := kafka.Record{Topic: "raw", Key: []byte("same"), Value: []byte("1")}
	require.NoError(t, d.Produce(context.Background(), one))
	broker = startBroker(t, port, dataDir)
	two := kafka.Record{Topic: "raw", Key: []byte("same"), Value: []byte("2")}
	require.NoError(t, d.Produce(context.Background(), two))
	require.Equal(t, 2, sp.Len(), "the second batch went behind the first")
	d.Start()
	t.Cleanup(func() { _ = d.Close() })
	require.Eventually(t, func() bool { return sp.Len() == 0 }, 30*time.Second, 20*time.Millisecond)
	three := kafka.Record{Topic: "raw", Key: []byte("same"), Value: []byte("3")}
	require.NoError(t, d.Produce(context.Background(), three))
	got := readUntil(t, brokers, "raw", func(got map[string][]string) bool { return len(got["same"]) >= 3 })
	require.Equal(t, []string{"1", "2", "3"}, got["same"], "same key, same partition: order kept")
}

func TestFullSpoolIsNotReady(t *testing.T) {
	sp, err := Open(Config{Dir: t.TempDir(), MaxBytes: 400, SegmentBytes: 400}, nil)
	require.NoError(t, err)
	d, err := NewDurable(DefaultDurableConfig(), failing{}, sp, nil, nil)
	require.NoError(t, err)
	for range 5 {
		_ = d.Produce(context.Background(), kafka.Record{Topic: "raw", Value: make([]byte, 90)})
	}
	err = d.Produce(context.Background(), kafka.Record{Topic: "raw", Value: make([]byte, 90)})
	require.ErrorIs(t, err, ErrFull)
	require.ErrorContains(t, d.Ready(context.Background()), "kafka failing since")
}

type failing struct{}

func (failing) Produce(context.Context, ...kafka.Record) error {
	return fmt.Errorf("broker unreachable")
}
func (failing) Close() error { return nil }
