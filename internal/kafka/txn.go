package kafka

import (
	"context"
	"errors"
	"fmt"
)

// Transactor writes records and commits a consumer group's input offsets
// in one Kafka transaction: a consume → process → produce stage built on
// it neither loses nor duplicates records for readers that read only
// committed data (sarama's group does; kafka-go's reader does not filter
// aborted transactions), even when it is killed mid-transaction.
type Transactor interface {
	// Commit writes records and sets the group's committed offset of
	// in.Topic/in.Partition to in.Next, atomically. It returns nil once
	// the transaction committed. On error the transaction is aborted (or
	// will be, when the next owner of the partition starts): nothing of
	// it becomes visible, and the caller must not commit the input
	// offsets any other way. Commit is safe for concurrent use; calls for
	// the same input partition are serialized.
	Commit(ctx context.Context, in InputOffset, records ...Record) error
	// Fence takes over input partitions of topic: it fences the
	// producers of their previous owners, whose open transactions the
	// broker then aborts, and returns once they are aborted. Call it when
	// the partitions are assigned, before their committed offsets are
	// read: a read-committed group member does not read a partition's
	// offset while a transaction that commits it is open (KIP-447's
	// stable offsets), so without Fence the transaction left open by a
	// killed owner holds the partition until the broker times it out.
	Fence(ctx context.Context, topic string, partitions ...int32) error
	// Close aborts open transactions and releases the producers. Safe to
	// call twice.
	Close() error
}

// InputOffset is the consumer position a transaction commits: Next is the
// offset of the next record to read from Topic/Partition.
type InputOffset struct {
	Topic     string
	Partition int32
	Next      int64
}

// TransactorConfig configures a Transactor.
type TransactorConfig struct {
	ProducerConfig
	// Group is the consumer group whose offsets the transactions commit.
	Group string
	// TransactionalID prefixes the transactional ids, one per input
	// partition ("<prefix>-<topic>-<partition>"): the member that takes
	// over a partition after a rebalance or a crash uses the same id,
	// which fences the previous owner and aborts its open transaction.
	// It must be the same for every member of the group and unique to
	// the group among all users of the cluster.
	TransactionalID string
}

// Validate reports missing required fields.
func (c TransactorConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka transactor: no brokers")
	case c.Group == "":
		return errors.New("kafka transactor: no group id")
	case c.TransactionalID == "":
		return errors.New("kafka transactor: no transactional id")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("kafka transactor: %w", err)
	}
	if err := c.SASL.Validate(); err != nil {
		return fmt.Errorf("kafka transactor: %w", err)
	}
	return nil
}

// AssignmentPreparer is implemented by a Handler that must act when its
// member is assigned partitions, before their committed offsets are read
// and before any of their batches is handled: a transactional stage
// fences the previous owners there (Transactor.Fence). A group adapter
// whose offset reads wait for open transactions calls it (saramakafka's
// group does); an error stops the member like an error from Handle.
type AssignmentPreparer interface {
	// PrepareAssigned is called with partitions of topic that the member
	// did not own in its previous assignment.
	PrepareAssigned(ctx context.Context, topic string, partitions []int32) error
}

// OffsetOwner is implemented by a Handler that may commit its input
// offsets itself, in the transaction that writes its output
// (Transactor.Commit). When CommitsOffsets reports true, a group adapter
// commits no offsets of its own for that handler: its commits go out
// after the handler returned, so one could land after the next batch's
// transaction and move the group's offset back, and a member starting
// from there would write that transaction's output a second time.
type OffsetOwner interface {
	// CommitsOffsets reports whether every batch the handler finished
	// has had its offsets committed by the handler. It is asked once per
	// Run.
	CommitsOffsets() bool
}

// HandlerCommitsOffsets reports whether h commits its own offsets (an
// OffsetOwner saying so): the group adapters then commit none.
func HandlerCommitsOffsets(h Handler) bool {
	o, ok := h.(OffsetOwner)
	return ok && o.CommitsOffsets()
}
