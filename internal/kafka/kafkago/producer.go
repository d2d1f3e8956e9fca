package kafkago

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// lingerTime is how long the writer waits for more records before it sends
// a partition's batch. kafka-go's default (1s) is meant for asynchronous
// writers; Produce is synchronous, so every call would pay the whole
// linger. A few milliseconds still groups the records of one call, which
// the writer hands over at once.
const lingerTime = 2 * time.Millisecond

// metadataTTL is how often the producer's transport refreshes its cached
// cluster metadata. kafka-go answers the writer's "how many partitions"
// question from that cache only (with auto-creation off), so a topic
// created by another client is unknown to the producer until the next
// refresh; kafka-go's default of 6s is long for a pipeline that creates
// its topics at start.
const metadataTTL = time.Second

// unknownTopicWait is how long Produce waits for a topic that is missing
// from the metadata cache to appear, like the Java producer's max.block.ms
// but short: it covers one cache refresh after the topic was created, and a
// topic that really does not exist still fails quickly.
const unknownTopicWait = 2*metadataTTL + 500*time.Millisecond

// Producer is a kafka.Producer on kafka-go's Writer.
type Producer struct {
	w         *kgo.Writer
	transport *kgo.Transport
	closeOnce sync.Once
	closeErr  error
}

var _ kafka.Producer = (*Producer)(nil)

// NewProducer returns a producer that writes with acks=all and partitions
// keyed records with FNV-1a, like sarama's default partitioner, so both
// adapters put a key on the same partition.
func NewProducer(cfg kafka.ProducerConfig) (*Producer, error) {
	cfg = cfg.WithDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka-go producer: no brokers")
	}
	sec, err := newSecurity(cfg.Brokers, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka-go producer: %w", err)
	}
	t := newTransport(cfg.ClientID, sec)
	t.MetadataTTL = metadataTTL
	w := &kgo.Writer{
		Addr:         kgo.TCP(cfg.Brokers...),
		Balancer:     &kgo.Hash{},
		RequiredAcks: kgo.RequireAll,
		BatchTimeout: lingerTime,
		// The writer rejects a record whose encoded size is above
		// BatchBytes before sending anything, which is how MaxMessageBytes
		// is enforced on the client side.
		BatchBytes: int64(cfg.MaxMessageBytes),
		// kafka-go's default of 100 records per batch would split one
		// webhook batch (up to 400 events) into several round trips;
		// BatchBytes is the limit that matters.
		BatchSize: 1000,
		Transport: describingTransport{t, cfg.ClientID, sec},
		// Topics are created deliberately (Admin.EnsureTopics); a typo in a
		// topic name must fail instead of creating a stray topic.
		AllowAutoTopicCreation: false,
	}
	return &Producer{w: w, transport: t}, nil
}

// Produce writes records and returns when all of them are acknowledged.
func (p *Producer) Produce(ctx context.Context, records ...kafka.Record) error {
	if len(records) == 0 {
		return nil
	}
	// kafka-go may still write records after WriteMessages returned on a
	// canceled ctx; a call that starts canceled writes nothing.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("produce %d records to %s: %w", len(records), topicList(records), err)
	}
	msgs := make([]kgo.Message, len(records))
	for i, r := range records {
		if r.Topic == "" {
			return fmt.Errorf("produce record %d: no topic", i)
		}
		msgs[i] = toMessage(r)
	}
	deadline := time.Now().Add(unknownTopicWait)
	for {
		err := p.w.WriteMessages(ctx, msgs...)
		if err == nil {
			return nil
		}
		// The writer looks up the partition count of every topic before it
		// sends anything; a bare UnknownTopicOrPartition (not inside
		// WriteErrors) comes from that lookup, so nothing was written and
		// the call can be repeated once the cache may have been refreshed.
		var werrs kgo.WriteErrors
		if errors.As(err, &werrs) || !errors.Is(err, kgo.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return produceError(records, err)
		}
		t := time.NewTimer(metadataTTL / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return produceError(records, ctx.Err())
		case <-t.C:
		}
	}
}

// produceError turns kafka-go's error into one that names the topics and
// the causes. kafka.WriteErrors holds one entry per record and does not
// unwrap; the result does, so errors.Is(err, kgo.UnknownTopicOrPartition)
// works.
func produceError(records []kafka.Record, err error) error {
	var werrs kgo.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(records) {
		return fmt.Errorf("produce %d records to %s: %w", len(records), topicList(records), err)
	}
	type key struct {
		topic string
		cause string
	}
	var (
		order  []key
		counts = map[key]int{}
		causes = map[key]error{}
		totals = map[string]int{}
	)
	for i, e := range werrs {
		totals[records[i].Topic]++
		if e == nil {
			continue
		}
		k := key{records[i].Topic, e.Error()}
		if _, ok := counts[k]; !ok {
			order = append(order, k)
			causes[k] = e
		}
		counts[k]++
	}
	errs := make([]error, 0, len(order))
	for _, k := range order {
		errs = append(errs, fmt.Errorf("produce to %s: %d of %d records failed: %w",
			k.topic, counts[k], totals[k.topic], causes[k]))
	}
	return errors.Join(errs...)
}

func topicList(records []kafka.Record) string {
	var topics []string
	for _, r := range records {
		if !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	return strings.Join(topics, ",")
}

// Close flushes pending writes and closes the connections. Safe to call
// twice.
func (p *Producer) Close() error {
	p.closeOnce.Do(func() {
		if err := p.w.Close(); err != nil {
			p.closeErr = fmt.Errorf("close kafka-go producer: %w", err)
		}
		// The writer only closes transports it created itself.
		p.transport.CloseIdleConnections()
	})
	return p.closeErr
}
