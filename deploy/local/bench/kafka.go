package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// kafkaEnv is a leg's broker: the embedded one started here, or the
// external cluster of the unit.
type kafkaEnv struct {
	*env
	broker *embedded.Broker
	admin  kafka.Admin
}

// startKafka starts the embedded broker as `make run` does (log on disk,
// fsync before acknowledging when SyncWrites), or uses the unit's
// brokers, and opens an admin client.
func startKafka(e *env) (*kafkaEnv, error) {
	k := &kafkaEnv{env: e}
	if len(e.brokers) == 0 {
		b, err := embedded.Start(embedded.Config{DataDir: filepath.Join(e.dir, "kafka"), DefaultPartitions: e.opts.Partitions, SyncWrites: e.opts.SyncWrites})
		if err != nil {
			return nil, err
		}
		k.broker, e.brokers = b, b.Addrs()
	}
	admin, err := saramakafka.NewAdmin(e.brokers, "auditbench")
	if err != nil {
		k.close()
		return nil, fmt.Errorf("kafka admin for %v: %w", e.brokers, err)
	}
	k.admin = admin
	return k, nil
}

func (k *kafkaEnv) close() {
	if k.admin != nil {
		_ = k.admin.Close()
	}
	k.broker.Close()
}

// name returns a topic or group name unique to this run, unit and round,
// so runs never share state on an external cluster.
func (e *env) name(r int, what string) string {
	return fmt.Sprintf("auditbench-%s-%s-%s-r%d-%s", e.nonce, e.unit.Stage, e.unit.Variant, r, what)
}

// topics creates the round's raw, events and DLQ topics, plus a
// pass-through topic for baselines.
func (k *kafkaEnv) topics(ctx context.Context, r int) (schemas.Topics, string, error) {
	t := schemas.Topics{Raw: k.name(r, "raw"), Events: k.name(r, "events"), DLQ: k.name(r, "dlq")}
	pass := k.name(r, "pass")
	var specs []kafka.TopicSpec
	for _, n := range []string{t.Raw, t.Events, t.DLQ, pass} {
		specs = append(specs, kafka.TopicSpec{Name: n, Partitions: k.opts.Partitions, ReplicationFactor: 1})
	}
	if err := k.admin.EnsureTopics(ctx, specs...); err != nil {
		return t, "", fmt.Errorf("create topics: %w", err)
	}
	return t, pass, nil
}

// rawRecords are the records the webhook receiver writes for events of
// cluster: keyed by auditID, with the stage's headers.
func rawRecords(topic, cluster string, events []Event, received time.Time) []kafka.Record {
	receivedAt := []byte(received.UTC().Format(time.RFC3339Nano))
	version := []byte(strconv.Itoa(schemas.SchemaVersion))
	out := make([]kafka.Record, len(events))
	for i, ev := range events {
		out[i] = kafka.Record{Topic: topic, Key: []byte(ev.AuditID), Value: ev.JSON, Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte(cluster)},
			{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
			{Key: schemas.HeaderReceivedAt, Value: receivedAt},
			{Key: schemas.HeaderSchemaVersion, Value: version},
		}}
	}
	return out
}

// produceAll writes records in chunks of size with conc concurrent calls
// (how data is loaded before a round; not measured).
func produceAll(ctx context.Context, p kafka.Producer, records []kafka.Record, size, conc int) error {
	chunks := make(chan []kafka.Record)
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				if err := p.Produce(ctx, c...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < len(records); i += size {
		select {
		case chunks <- records[i:min(i+size, len(records))]:
		case err := <-errs:
			close(chunks)
			wg.Wait()
			return fmt.Errorf("load records: %w", err)
		}
	}
	close(chunks)
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("load records: %w", err)
	default:
		return nil
	}
}

// passThrough is the baseline handler: it writes the consumed records
// unchanged (key, value, headers) to topic with the stage's own producer.
func passThrough(p kafka.Producer, topic string) kafka.Handler {
	return kafka.HandlerFunc(func(ctx context.Context, b kafka.Batch) error {
		out := make([]kafka.Record, len(b.Records))
		for i, r := range b.Records {
			out[i] = kafka.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
		}
		return p.Produce(ctx, out...)
	})
}

// metered wraps a stage's handler: the clock starts with the first batch
// (so joining the group is not measured), every batch's Handle time is a
// latency sample, and done closes once expected records were handled.
type metered struct {
	h        kafka.Handler
	m        *meter
	expected int

	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	n    int
}

func newMetered(h kafka.Handler, expected int) *metered {
	return &metered{h: h, m: &meter{}, expected: expected, done: make(chan struct{})}
}

func (mh *metered) Handle(ctx context.Context, b kafka.Batch) error {
	mh.m.begin()
	start := time.Now()
	if err := mh.h.Handle(ctx, b); err != nil {
		return err
	}
	var bytes int64
	for _, r := range b.Records {
		bytes += int64(len(r.Value))
	}
	mh.m.add(len(b.Records), bytes, time.Since(start))
	mh.mu.Lock()
	mh.n += len(b.Records)
	reached := mh.n >= mh.expected
	mh.mu.Unlock()
	if reached {
		mh.once.Do(func() { mh.m.finish(); close(mh.done) })
	}
	return nil
}

// Sync implements kafka.Syncer for the wrapped handler, so that the group
// adapter syncs it before each offset commit as in production: a store
// that makes its writes durable only at Sync (the consumer's VictoriaLogs
// store, a checkpoint at most every second) pays for its checkpoints in
// the stage's figures. The round ends when the last batch is handled, as
// for every stage; the store's Close makes the rest durable, unmeasured,
// as the steady state has about one checkpoint per second anyway.
func (mh *metered) Sync(ctx context.Context) error {
	if sync := kafka.HandlerSyncer(mh.h); sync != nil {
		return sync(ctx)
	}
	return nil
}

// drain runs a fresh consumer group on topic with h (the real sarama
// adapter, as the stages run) until expected records were handled, and
// returns the round's figures.
func (k *kafkaEnv) drain(ctx context.Context, topic, group string, h kafka.Handler, expected int) (Round, error) {
	g, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: k.brokers, Group: group, Topics: []string{topic}, ClientID: "auditbench", MaxBatch: k.opts.GroupBatch})
	if err != nil {
		return Round{}, fmt.Errorf("consumer group %s: %w", group, err)
	}
	mh := newMetered(h, expected)
	runCtx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(runCtx, mh) }()
	var rerr error
	select {
	case <-mh.done:
	case err := <-runErr:
		rerr = fmt.Errorf("group %s stopped: %v", group, err)
	case <-ctx.Done():
		rerr = fmt.Errorf("group %s handled %d of %d records: %w", group, mh.m.round().Events, expected, ctx.Err())
	}
	cancel()
	if rerr == nil {
		<-runErr
	}
	_ = g.Close()
	if rerr != nil {
		return Round{}, rerr
	}
	rd := mh.m.round()
	return rd, nil
}
