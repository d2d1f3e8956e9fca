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
// Streams "exactly-once v1" layout, which needs no group generation). The
// fencing must happen when a partition is assigned, before its offset is
// read (Fence, called through the group's kafka.AssignmentPreparer), not
// lazily at the first Commit: a read-committed offset read waits for the
// previous owner's open transaction, which only the fencing ends early.
type Transactor struct {
	cfg kafka.TransactorConfig

	mu     sync.Mutex
	closed bool
	parts  map[string]*txnPartition
}

type txnPartition struct {
	key string
	// mu serializes the partition's transactions and guards sp and
	// closed: one transaction at a time.
	mu     sync.Mutex
	sp     sarama.SyncProducer
	closed bool
}

var _ kafka.Transactor = (*Transactor)(nil)

// NewTransactor returns a Transactor; producers connect on first use or
// on Fence.
func NewTransactor(cfg kafka.TransactorConfig) (*Transactor, error) {
	cfg.ProducerConfig = cfg.ProducerConfig.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Transactor{cfg: cfg, parts: map[string]*txnPartition{}}, nil
}

// partition returns the state of an input partition; its producer is
// created by the caller, under p.mu.
func (t *Transactor) partition(topic string, partition int32) (*txnPartition, error) {
	key := t.cfg.TransactionalID + "-" + topic + "-" + strconv.FormatInt(int64(partition), 10)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("kafka transactor: closed")
	}
	p, ok := t.parts[key]
	if !ok {
		p = &txnPartition{key: key}
		t.parts[key] = p
	}
	return p, nil
}

// newProducer creates the transactional producer of a partition. It runs
// InitProducerId, which fences a previous producer with the same id and
// returns only once the broker aborted that producer's open transaction.
func (t *Transactor) newProducer(key string) (sarama.SyncProducer, error) {
	sc, err := newConfig(t.cfg.ClientID, t.cfg.TLS, t.cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka transactor: %w", err)
	}
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.MaxMessageBytes = t.cfg.MaxMessageBytes
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Transaction.ID = key
	// A transaction left open by a dead owner blocks read-committed
	// readers of the output partitions, and the group's offset reads of
	// the input partition, until the broker aborts it: on this timeout,
	// or sooner when the next owner fences it. 10s is Kafka Streams'
	// choice; sarama's default is a minute.
	sc.Producer.Transaction.Timeout = 10 * time.Second
	sp, err := sarama.NewSyncProducer(t.cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka transactor: transactional producer %s: %w", key, describe(err, t.cfg.Brokers, t.cfg.SASL))
	}
	return sp, nil
}

// Fence implements kafka.Transactor: it replaces the producers of the
// partitions with new ones, whose InitProducerId fences whoever used the
// ids before (another member, or this process's dead predecessor).
func (t *Transactor) Fence(ctx context.Context, topic string, partitions ...int32) error {
	errs := make([]error, len(partitions))
	var wg sync.WaitGroup
	for i, partition := range partitions {
		p, err := t.partition(topic, partition)
		if err != nil {
			return err
		}
		// In parallel: each may wait for the broker to abort a
		// transaction, and the member waits for all of them.
		wg.Go(func() {
			if err := ctx.Err(); err != nil {
				errs[i] = err
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.closed {
				errs[i] = errors.New("kafka transactor: closed")
				return
			}
			if p.sp != nil {
				// Ours from an earlier assignment, possibly fenced
				// since by another member: start afresh.
				_ = p.sp.Close()
				p.sp = nil
			}
			p.sp, errs[i] = t.newProducer(p.key)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka transactor: fence %s %v: %w", topic, partitions, err)
	}
	return nil
}

// Commit implements kafka.Transactor.
func (t *Transactor) Commit(ctx context.Context, in kafka.InputOffset, records ...kafka.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := t.partition(in.Topic, in.Partition)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("kafka transactor: closed")
	}
	if p.sp == nil {
		if p.sp, err = t.newProducer(p.key); err != nil {
			return err
		}
	}
	if err := t.commit(p.sp, in, records); err != nil {
		// A producer in a fatal state (fenced, or an error the
		// transaction cannot recover from) is replaced on the next call.
		if p.sp.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 {
			_ = p.sp.Close()
			p.sp = nil
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
		p.closed = true
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
