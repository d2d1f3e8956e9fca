package kafka

import (
	"context"
	"errors"
	"time"
)

// OffsetRange is the half-open range [Start, End) of offsets of one
// partition.
type OffsetRange struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Len is the number of offsets in the range (records, when the partition
// has no gaps).
func (r OffsetRange) Len() int64 { return max(r.End-r.Start, 0) }

// ReaderConfig configures a PartitionReader.
type ReaderConfig struct {
	Brokers  []string
	ClientID string
	// TLS encrypts the connections; zero means plaintext.
	TLS TLS
	// SASL authenticates the reader; zero means none.
	SASL SASL
	// MaxBatch caps the records of one Batch handed to a ReadRange
	// callback. Default 500.
	MaxBatch int
	// FetchMaxBytes caps the bytes of one fetch. Default 8 MiB; a record
	// larger than that is still returned (brokers always return at least
	// one batch).
	FetchMaxBytes int
}

// WithDefaults fills zero fields with defaults.
func (c ReaderConfig) WithDefaults() ReaderConfig {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 500
	}
	if c.FetchMaxBytes <= 0 {
		c.FetchMaxBytes = 8 << 20
	}
	if c.ClientID == "" {
		c.ClientID = "auditpipe"
	}
	return c
}

// PartitionReader reads fixed ranges of partitions directly, without a
// consumer group, so that tools such as replay never touch a live group's
// offsets or membership.
type PartitionReader interface {
	// Partitions returns the partition ids of topic in ascending order.
	Partitions(ctx context.Context, topic string) ([]int32, error)
	// Bounds returns, per partition of topic, the first offset still in
	// the log (log start) and the high watermark (the offset the next
	// record will get).
	Bounds(ctx context.Context, topic string) (map[int32]OffsetRange, error)
	// OffsetsForTime returns, per partition of topic, the first offset
	// whose record timestamp is at or after t, or the high watermark when
	// there is none.
	OffsetsForTime(ctx context.Context, topic string, t time.Time) (map[int32]int64, error)
	// ReadRange reads the offsets [r.Start, r.End) of one partition in
	// order and calls fn with batches of consecutive records. It returns
	// nil once fn returned nil for every record below r.End, ctx's error
	// when ctx ends, and fn's error (wrapped) as soon as fn fails. Offsets
	// without a record (compaction, transaction markers) are skipped.
	ReadRange(ctx context.Context, topic string, partition int32, r OffsetRange, fn func(ctx context.Context, b Batch) error) error
	// Close releases the reader. Safe to call twice.
	Close() error
}

// GroupInfo describes a consumer group.
type GroupInfo struct {
	Group string
	// State is the coordinator's state name (Empty, Stable,
	// PreparingRebalance, CompletingRebalance, Dead).
	State string
	// Members are the client ids and hosts of the active members, one
	// entry per member ("client-id@host").
	Members []string
}

// ErrGroupActive is returned when offsets of a group with active members
// would be changed: the members would overwrite them with their next
// commit, or worse, race with them.
var ErrGroupActive = errors.New("consumer group has active members")

// GroupOffsets reads and resets a consumer group's committed offsets from
// outside the group.
type GroupOffsets interface {
	// DescribeGroup returns the group's state and active members. An
	// unknown group is reported with state "Dead" or "Empty" and no
	// members, not as an error.
	DescribeGroup(ctx context.Context, group string) (GroupInfo, error)
	// CommittedOffsets returns the group's committed offset (the next
	// offset to read) per partition of topic; partitions without a commit
	// are absent.
	CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error)
	// ResetOffsets commits offsets for the group on topic. It refuses with
	// an error wrapping ErrGroupActive when the group has active members.
	ResetOffsets(ctx context.Context, group, topic string, offsets map[int32]int64) error
	// Close releases the client. Safe to call twice.
	Close() error
}
