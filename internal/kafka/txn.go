package kafka

import (
	"context"
	"errors"
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
	return nil
}
