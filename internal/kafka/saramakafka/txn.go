package saramakafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// Transactor is a kafka.Transactor on sarama's transactional producer,
// with one producer (and transactional id) per input partition: sarama
// runs one transaction at a time per producer, and a per-partition id is
// what fences the previous owner of a partition (the classic Kafka
// Streams "exactly-once v1" layout, which needs no group generation).
type Transactor struct {
	cfg kafka.TransactorConfig

	mu     sync.Mutex
	closed bool
	parts  map[string]*txnPartition
}

type txnPartition struct {
	mu sync.Mutex // one transaction at a time
	sp sarama.SyncProducer
}

var _ kafka.Transactor = (*Transactor)(nil)

// NewTransactor returns a Transactor; producers connect on first use.
func NewTransactor(cfg kafka.TransactorConfig) (*Transactor, error) {
	cfg.ProducerConfig = cfg.ProducerConfig.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Transactor{cfg: cfg, parts: map[string]*txnPartition{}}, nil
}

func (t *Transactor) partition(in kafka.InputOffset) (*txnPartition, error) {
	key := t.cfg.TransactionalID + "-" + in.Topic + "-" + strconv.FormatInt(int64(in.Partition), 10)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("kafka transactor: closed")
	}
	p, ok := t.parts[key]
	if !ok {
		p = &txnPartition{}
		t.parts[key] = p
	}
	if p.sp == nil {
		sc := newConfig(t.cfg.ClientID, t.cfg.SASL)
		sc.Producer.RequiredAcks = sarama.WaitForAll
		sc.Producer.Idempotent = true
		sc.Net.MaxOpenRequests = 1
		sc.Producer.Partitioner = sarama.NewHashPartitioner
		sc.Producer.MaxMessageBytes = t.cfg.MaxMessageBytes
		sc.Producer.Return.Successes = true
		sc.Producer.Return.Errors = true
		sc.Producer.Transaction.ID = key
		// A transaction left open by a dead owner blocks read-committed
		// readers of the output partitions until the broker aborts it:
		// on this timeout, or sooner when the next owner starts. 10s
		// is Kafka Streams' choice; sarama's default is a minute.
		sc.Producer.Transaction.Timeout = 10 * time.Second
		// Creating the producer runs InitProducerId, which fences a
		// previous producer with this id and aborts its open transaction.
		sp, err := sarama.NewSyncProducer(t.cfg.Brokers, sc)
		if err != nil {
			return nil, fmt.Errorf("kafka transactor: transactional producer %s: %w", key, err)
		}
		p.sp = sp
	}
	return p, nil
}

// Commit implements kafka.Transactor.
func (t *Transactor) Commit(ctx context.Context, in kafka.InputOffset, records ...kafka.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := t.partition(in)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sp == nil {
		return errors.New("kafka transactor: closed")
	}
	if err := t.commit(p.sp, in, records); err != nil {
		// A producer in a fatal state (fenced, or an error the
		// transaction cannot recover from) is replaced on the next call.
		if p.sp.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 {
			_ = p.sp.Close()
			t.mu.Lock()
			p.sp = nil
			t.mu.Unlock()
		}
		return fmt.Errorf("kafka transactor: %s/%d up to offset %d: %w", in.Topic, in.Partition, in.Next, err)
	}
	return nil
}

func (t *Transactor) commit(sp sarama.SyncProducer, in kafka.InputOffset, records []kafka.Record) error {
	if err := sp.BeginTxn(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	abort := func(err error) error {
		if aerr := sp.AbortTxn(); aerr != nil {
			return errors.Join(err, fmt.Errorf("abort transaction: %w", aerr))
		}
		return err
	}
	if len(records) > 0 {
		msgs := make([]*sarama.ProducerMessage, len(records))
		for i, r := range records {
			msgs[i] = toMessage(r)
		}
		if err := sp.SendMessages(msgs); err != nil {
			return abort(sendError(records, msgs, err))
		}
	}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{
		in.Topic: {{Partition: in.Partition, Offset: in.Next}},
	}
	if err := sp.AddOffsetsToTxn(offsets, t.cfg.Group); err != nil {
		return abort(fmt.Errorf("add offsets to transaction: %w", err))
	}
	if err := sp.CommitTxn(); err != nil {
		return abort(fmt.Errorf("commit transaction: %w", err))
	}
	return nil
}

// Close implements kafka.Transactor.
func (t *Transactor) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	parts := t.parts
	t.mu.Unlock()
	var errs []error
	for key, p := range parts {
		p.mu.Lock()
		if p.sp != nil {
			if err := p.sp.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close transactional producer %s: %w", key, err))
			}
			p.sp = nil
		}
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}
