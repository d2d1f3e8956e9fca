package bench

// The franz-go reference: a plain consume → produce pass-through with the
// fastest Go client, on the same broker and data as the stages. Every
// stage is also reported against it (Result.VsFranz), so that a stage's
// ratio does not hide a slow client behind an equally slow same-client
// baseline. This is the only file of the harness that uses franz-go; it is
// harness code, not business code, and goes through no adapter on purpose:
// it measures the client, not ours.

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
)

type franzLeg struct {
	k      *kafkaEnv
	loader kafka.Producer
	prod   *kgo.Client
}

func newFranzLeg(_ context.Context, e *env) (leg, error) {
	k, err := startKafka(e)
	if err != nil {
		return nil, err
	}
	l := &franzLeg{k: k}
	if l.loader, err = kafkago.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-loader"}); err != nil {
		k.close()
		return nil, err
	}
	// Produce as the adapters promise: acks=all, idempotent (franz-go's
	// default), no compression, the key hashed to its partition.
	l.prod, err = kgo.NewClient(kgo.SeedBrokers(k.brokers...), kgo.ClientID("auditbench-franz"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerLinger(0))
	if err != nil {
		_ = l.loader.Close()
		k.close()
		return nil, fmt.Errorf("franz-go producer: %w", err)
	}
	return l, nil
}

func (l *franzLeg) close() error {
	l.prod.Close()
	err := l.loader.Close()
	l.k.close()
	return err
}

// round loads the raw topic as the processor's legs do, then consumes it
// in a fresh consumer group and writes every fetched batch unchanged to
// the pass-through topic, committing after each write (at-least-once, as
// the stages do). The clock starts at the first non-empty fetch.
func (l *franzLeg) round(ctx context.Context, r int) (Round, error) {
	o := l.k.opts
	topics, pass, err := l.k.topics(ctx, r)
	if err != nil {
		return Round{}, err
	}
	records := rawRecords(topics.Raw, "bench", l.k.gen.Next(o.Events), time.Now())
	if err := produceAll(ctx, l.loader, records, o.BatchSize, o.Concurrency); err != nil {
		return Round{}, err
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(l.k.brokers...), kgo.ClientID("auditbench-franz"),
		kgo.ConsumerGroup(l.k.name(r, "group")), kgo.ConsumeTopics(topics.Raw),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		return Round{}, fmt.Errorf("franz-go consumer: %w", err)
	}
	defer cons.Close()
	m := &meter{}
	n := 0
	for n < len(records) {
		fs := cons.PollRecords(ctx, o.GroupBatch)
		if err := ctx.Err(); err != nil {
			return Round{}, fmt.Errorf("franz-go pass-through handled %d of %d records: %w", n, len(records), err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return Round{}, fmt.Errorf("franz-go fetch %s[%d]: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		in := fs.Records()
		if len(in) == 0 {
			continue
		}
		m.begin()
		start := time.Now()
		out := make([]*kgo.Record, len(in))
		var bytes int64
		for i, rec := range in {
			out[i] = &kgo.Record{Topic: pass, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}
			bytes += int64(len(rec.Value))
		}
		if err := l.prod.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return Round{}, fmt.Errorf("franz-go produce to %s: %w", pass, err)
		}
		if err := cons.CommitRecords(ctx, in...); err != nil {
			return Round{}, fmt.Errorf("franz-go commit: %w", err)
		}
		m.add(len(in), bytes, time.Since(start))
		n += len(in)
	}
	m.finish()
	return m.round(), nil
}
