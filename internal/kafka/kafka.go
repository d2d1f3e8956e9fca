// Package kafka is the port between auditpipe's business code and Kafka.
// Business code depends only on the small interfaces here; the adapters in
// the sub-packages saramakafka and kafkago are the only packages that import
// a Kafka client. The in-process broker for tests and `make run` lives in
// embedded, and the conformance suite every adapter passes in kafkatest.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one Kafka record. Topic, Key, Value and Headers are set by the
// caller when producing; Partition, Offset and Time are set on consumed
// records.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
}

// HeaderValue returns the value of the first header named key, or nil.
func (r Record) HeaderValue(key string) []byte {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// Producer writes records to Kafka.
type Producer interface {
	// Produce returns nil only when the broker acknowledged every record
	// (acks=all). Records with the same key keep their order. On error,
	// some records may have been written: callers retry the whole call and
	// rely on downstream de-duplication.
	Produce(ctx context.Context, records ...Record) error
	// Close flushes and releases the producer. Safe to call twice.
	Close() error
}

// Batch is a run of consecutive records from one partition, in offset
// order.
type Batch struct {
	Topic     string
	Partition int32
	Records   []Record
	// HighWatermark is the partition's high watermark (the offset the next
	// produced record will get) as last seen by the consumer when the batch
	// was fetched; 0 when the adapter does not know it. HighWatermark minus
	// the offset after the batch is the partition's lag.
	HighWatermark int64
}

// Handler processes the batches of a consumer group member. It is called
// concurrently for different partitions, never concurrently for the same
// partition.
type Handler interface {
	// Handle returns nil when every record of the batch is done (written,
	// or deliberately skipped); the group may then commit the offset after
	// the batch. An error stops the member: nothing of the batch is
	// committed, and the records are delivered again to whichever member
	// consumes the partition next. ctx is canceled when the partition is
	// revoked; a batch that finishes after that is not committed.
	Handle(ctx context.Context, b Batch) error
}

// Syncer is implemented by a Handler whose batches are not yet durable
// when Handle returns (a store that makes its writes durable in periodic
// checkpoints: decision 0026). The group adapters call Sync before they
// commit offsets, and commit only the batches whose Handle returned before
// Sync was called; Sync makes every such batch durable. An error from
// Sync stops the member, like an error from Handle: nothing more is
// committed, and the uncommitted records are delivered again.
//
// Sync batches durability across partitions and batches: one Sync covers
// every batch handled since the last one, so a handler pays for it per
// commit round instead of per batch. Handlers that are durable when
// Handle returns do not implement it.
type Syncer interface {
	Sync(ctx context.Context) error
}

// HandlerSyncer returns h's Sync when h is a Syncer, else nil.
func HandlerSyncer(h Handler) func(context.Context) error {
	if s, ok := h.(Syncer); ok {
		return s.Sync
	}
	return nil
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, b Batch) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, b Batch) error { return f(ctx, b) }

// GroupConsumer is one member of a consumer group.
type GroupConsumer interface {
	// Run consumes the configured topics and calls h until ctx is canceled
	// (it then returns nil after the in-flight batches finished) or h
	// returns an error (Run returns it, wrapped). Run may be called again
	// after it returned, which rejoins the group.
	Run(ctx context.Context, h Handler) error
	// Close leaves the group. Safe to call twice, and without Run.
	Close() error
}

// GroupConfig configures a consumer group member.
type GroupConfig struct {
	Brokers  []string
	Group    string
	Topics   []string
	ClientID string
	// TLS encrypts the connections; zero means plaintext.
	TLS TLS
	// SASL authenticates the member; zero means none.
	SASL SASL
	// MaxBatch caps the records of one Batch. Default 500.
	MaxBatch int
	// MaxWait is how long a partition waits for more records before it
	// hands over a batch smaller than MaxBatch. Default 20ms: every stage
	// a record passes adds up to this wait (decision 0027); under load
	// batches fill up to MaxBatch anyway while the handler works.
	MaxWait time.Duration
	// StartAtLatest makes a group with no committed offset start at the
	// end of each partition instead of the beginning.
	StartAtLatest bool
	// SessionTimeout is how long the broker waits for heartbeats before it
	// considers the member dead. Default 10s.
	SessionTimeout time.Duration
}

// WithDefaults fills zero fields with defaults.
func (c GroupConfig) WithDefaults() GroupConfig {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 500
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 20 * time.Millisecond
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.ClientID == "" {
		c.ClientID = "auditpipe"
	}
	return c
}

// Validate reports missing required fields.
func (c GroupConfig) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("kafka group: no brokers")
	case c.Group == "":
		return errors.New("kafka group: no group id")
	case len(c.Topics) == 0:
		return errors.New("kafka group: no topics")
	}
	if err := c.TLS.Validate(); err != nil {
		return fmt.Errorf("kafka group: %w", err)
	}
	if err := c.SASL.Validate(); err != nil {
		return fmt.Errorf("kafka group: %w", err)
	}
	return nil
}

// SASL mechanisms a client can authenticate with.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL authenticates a client to the brokers. The zero value means no
// authentication. PLAIN sends the password itself and belongs only on an
// encrypted or loopback connection; the SCRAM mechanisms never send it.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty disables
	// SASL.
	Mechanism string `json:"mechanism"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	// PasswordFile holds the password instead of Password (one trailing
	// newline is ignored). It is read whenever a client is built; see
	// Resolved.
	PasswordFile string `json:"passwordFile"`
}

// Enabled reports whether the client authenticates.
func (s SASL) Enabled() bool { return s.Mechanism != "" }

// Validate checks the mechanism and that a user and password come with
// it; a password file is read, so that a missing or empty one is reported
// at start (and by `validate`), not at the first connection.
func (s SASL) Validate() error {
	switch s.Mechanism {
	case "":
		return nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("sasl: mechanism %q is not supported: want %s, %s or %s", s.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}
	if s.Username == "" || (s.Password == "" && s.PasswordFile == "") {
		return fmt.Errorf("sasl: mechanism %s needs a username and a password (or passwordFile)", s.Mechanism)
	}
	_, err := s.Resolved()
	return err
}

// String leaves the password out, so that a SASL in a log line or an
// error does not leak it.
func (s SASL) String() string {
	if !s.Enabled() {
		return "none"
	}
	return s.Mechanism + " as " + s.Username
}

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Brokers  []string
	ClientID string
	// TLS encrypts the connections; zero means plaintext.
	TLS TLS
	// SASL authenticates the producer; zero means none.
	SASL SASL
	// MaxMessageBytes is the largest record the producer accepts. Default
	// 1 MiB, Kafka's default message.max.bytes.
	MaxMessageBytes int
}

// WithDefaults fills zero fields with defaults.
func (c ProducerConfig) WithDefaults() ProducerConfig {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1 << 20
	}
	if c.ClientID == "" {
		c.ClientID = "auditpipe"
	}
	return c
}

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]string
}

// Admin manages topics.
type Admin interface {
	// EnsureTopics creates the topics that do not exist yet; existing
	// topics are left as they are.
	EnsureTopics(ctx context.Context, topics ...TopicSpec) error
	// CommittedOffsets returns the group's committed offset (the next
	// offset to read) per partition of topic; partitions without a commit
	// are absent.
	CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error)
	Close() error
}
