package replay

import (
	"context"
	"errors"
	"fmt"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// Target receives the processed records of a replay.
type Target interface {
	// Write returns nil only when every record is durable at the target;
	// the replay's checkpoint moves past the records only then. On error
	// the replay stops and a resume writes the batch again, so a target
	// must tolerate duplicates (the identity of a processed event is its
	// cluster, auditID, stage and auditpipe.contentHash, decision 0012).
	// Write is called concurrently for
	// different partitions.
	Write(ctx context.Context, records []kafka.Record) error
}

// TargetFunc adapts a function to Target.
type TargetFunc func(ctx context.Context, records []kafka.Record) error

// Write calls f.
func (f TargetFunc) Write(ctx context.Context, records []kafka.Record) error { return f(ctx, records) }

// KafkaTarget writes records to Topic through Producer, whose Produce
// returns only once the broker acknowledged them all (acks=all). Keys and
// headers are those of the processor (key = cluster), so a replayed topic
// can be consumed like audit.events.
type KafkaTarget struct {
	Producer kafka.Producer
	Topic    string
}

var _ Target = KafkaTarget{}

// Write produces records to t.Topic.
func (t KafkaTarget) Write(ctx context.Context, records []kafka.Record) error {
	if t.Producer == nil || t.Topic == "" {
		return errors.New("kafka target: no producer or no topic")
	}
	out := make([]kafka.Record, len(records))
	for i, r := range records {
		out[i] = kafka.Record{Topic: t.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
	}
	if err := t.Producer.Produce(ctx, out...); err != nil {
		return fmt.Errorf("write %d records to topic %s: %w", len(out), t.Topic, err)
	}
	return nil
}
