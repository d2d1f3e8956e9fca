package saramakafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/IBM/sarama"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// Producer is a kafka.Producer on a sarama SyncProducer.
type Producer struct {
	sp sarama.SyncProducer

	// mu guards closed; inflight counts sends still running in the
	// background after their caller's context ended, which Close waits for
	// (sending to a closed sarama producer panics).
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

var _ kafka.Producer = (*Producer)(nil)

// NewProducer connects a producer to cfg.Brokers.
func NewProducer(cfg kafka.ProducerConfig) (*Producer, error) {
	cfg = cfg.WithDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("kafka producer: no brokers")
	}
	if err := cfg.SASL.Validate(); err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	sc, err := newConfig(cfg.ClientID, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	// Produce promises acks=all, and retries must not duplicate or reorder
	// records of a key: the idempotent producer guarantees that only with
	// one request in flight per broker connection.
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	// FNV-1a of the key, the same placement as kafka-go's kafka.Hash, so
	// both adapters write a key to the same partition.
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.MaxMessageBytes = cfg.MaxMessageBytes
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sp, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: connect to %v: %w", cfg.Brokers, describe(err, cfg.Brokers, cfg.SASL))
	}
	return &Producer{sp: sp}, nil
}

// Produce sends records and waits for the broker to acknowledge all of
// them. When ctx ends first, Produce returns ctx's error while sarama
// finishes the send in the background; some records may then be written,
// which the port allows (callers retry, consumers de-duplicate).
func (p *Producer) Produce(ctx context.Context, records ...kafka.Record) error {
	if len(records) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("produce %d records to %s: %w", len(records), topicsOf(records), err)
	}
	msgs := make([]*sarama.ProducerMessage, len(records))
	for i, r := range records {
		msgs[i] = toMessage(r)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("produce %d records to %s: producer closed", len(records), topicsOf(records))
	}
	p.inflight.Add(1)
	p.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		defer p.inflight.Done()
		done <- p.sp.SendMessages(msgs)
	}()
	select {
	case err := <-done:
		return sendError(records, msgs, err)
	case <-ctx.Done():
		return fmt.Errorf("produce %d records to %s: %w", len(records), topicsOf(records), ctx.Err())
	}
}

// Close waits for background sends and closes the producer. Safe to call
// twice.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	if err := p.sp.Close(); err != nil {
		return fmt.Errorf("close kafka producer: %w", err)
	}
	return nil
}

func toMessage(r kafka.Record) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: r.Topic}
	// A nil Encoder is a null key; sarama's hash partitioner then picks a
	// random partition, as kafka-go does for keyless records.
	if r.Key != nil {
		m.Key = sarama.ByteEncoder(r.Key)
	}
	if r.Value != nil {
		m.Value = sarama.ByteEncoder(r.Value)
	}
	if len(r.Headers) > 0 {
		m.Headers = make([]sarama.RecordHeader, len(r.Headers))
		for i, h := range r.Headers {
			m.Headers[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		}
	}
	return m
}

// sendError turns SendMessages' error into one that names the topics and
// the first cause.
func sendError(records []kafka.Record, msgs []*sarama.ProducerMessage, err error) error {
	if err == nil {
		return nil
	}
	var perrs sarama.ProducerErrors
	if !errors.As(err, &perrs) || len(perrs) == 0 {
		return fmt.Errorf("produce %d records to %s: %w", len(records), topicsOf(records), err)
	}
	failed := make([]kafka.Record, 0, len(perrs))
	for _, pe := range perrs {
		if pe.Msg != nil {
			failed = append(failed, kafka.Record{Topic: pe.Msg.Topic})
		}
	}
	return fmt.Errorf("produce to %s: %d of %d records failed, first: %w",
		topicsOf(failed), len(perrs), len(msgs), perrs[0].Err)
}

// topicsOf names the distinct topics of records for error messages.
func topicsOf(records []kafka.Record) string {
	var topics []string
	for _, r := range records {
		if !slices.Contains(topics, r.Topic) {
			topics = append(topics, r.Topic)
		}
	}
	slices.Sort(topics)
	if len(topics) == 1 {
		return "topic " + topics[0]
	}
	return fmt.Sprintf("topics %v", topics)
}
