package bench

// Adapter for the consumer stage: the real group handler with the local
// store (Options.StoreEngine) as its sink, under the real sarama consumer group, as
// deploy/local/allinone wires it. The events topic is loaded with the
// processor's real output (pipeline.Handle on generated raw records).

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	consumerapp "github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
)

type consumerLeg struct {
	k      *kafkaEnv
	loader kafka.Producer
	prod   kafka.Producer // the baseline's producer (sarama, as the groups use)
	pol    *policy.Policy
}

func newConsumerLeg(_ context.Context, e *env) (leg, error) {
	k, err := startKafka(e)
	if err != nil {
		return nil, err
	}
	l := &consumerLeg{k: k}
	if l.pol, err = policy.Load(policies.TKEDefaultName, policies.TKEDefault); err != nil {
		k.close()
		return nil, err
	}
	if l.loader, err = kafkago.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-loader"}); err != nil {
		k.close()
		return nil, err
	}
	if l.prod, err = saramakafka.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-consumer"}); err != nil {
		_ = l.loader.Close()
		k.close()
		return nil, err
	}
	return l, nil
}

func (l *consumerLeg) close() error {
	err := l.prod.Close()
	_ = l.loader.Close()
	l.k.close()
	return err
}

// countingProducer counts the records written per topic.
type countingProducer struct {
	kafka.Producer
	topic string
	n     atomic.Int64
}

func (c *countingProducer) Produce(ctx context.Context, records ...kafka.Record) error {
	if err := c.Producer.Produce(ctx, records...); err != nil {
		return err
	}
	for _, r := range records {
		if r.Topic == c.topic {
			c.n.Add(1)
		}
	}
	return nil
}

// loadEvents fills the events topic with what the processor makes of
// events and returns how many records it holds.
func (l *consumerLeg) loadEvents(ctx context.Context, r int) (int, error) {
	o := l.k.opts
	topics, _, err := l.k.topics(ctx, r)
	if err != nil {
		return 0, err
	}
	cp := &countingProducer{Producer: l.loader, topic: topics.Events}
	p, err := pipeline.New(pipeline.Config{Topics: topics}, l.pol, cp, nil, l.k.logger)
	if err != nil {
		return 0, err
	}
	raw := rawRecords(topics.Raw, "bench", l.k.gen.Next(o.Events), time.Now())
	for i := range raw {
		raw[i].Offset = int64(i)
	}
	for i := 0; i < len(raw); i += o.GroupBatch {
		b := kafka.Batch{Topic: topics.Raw, Records: raw[i:min(i+o.GroupBatch, len(raw))]}
		if err := p.Handle(ctx, b); err != nil {
			return 0, fmt.Errorf("load events topic: %w", err)
		}
	}
	return int(cp.n.Load()), nil
}

func (l *consumerLeg) round(ctx context.Context, r int) (Round, error) {
	n, err := l.loadEvents(ctx, r)
	if err != nil {
		return Round{}, err
	}
	if n == 0 {
		return Round{}, fmt.Errorf("the processor kept none of %d events", l.k.opts.Events)
	}
	topic := l.k.name(r, "events")
	if l.k.unit.Variant == VariantBaseline {
		return l.k.drain(ctx, topic, l.k.name(r, "group"), passThrough(l.prod, l.k.name(r, "pass")), n)
	}
	reg := prometheus.NewRegistry()
	store, err := consumerapp.OpenStore(consumerapp.LocalConfig{
		Engine: l.k.opts.StoreEngine,
		Path:   filepath.Join(l.k.dir, "store-r"+strconv.Itoa(r), "events"),
	}, eventstore.Options{Logger: l.k.logger, Registerer: reg})
	if err != nil {
		return Round{}, fmt.Errorf("open local store: %w", err)
	}
	defer store.Close()
	metrics, err := group.NewMetrics(reg)
	if err != nil {
		return Round{}, err
	}
	h := group.NewHandler([]group.Sink{group.NewLocalSink(store, l.k.logger)}, metrics, l.k.logger)
	rd, err := l.k.drain(ctx, topic, l.k.name(r, "group"), h, n)
	if err != nil {
		return rd, err
	}
	// Counts must add up: every record handled is one stored event.
	res, err := store.Query(ctx, eventstore.Query{Cluster: "bench", Limit: 1})
	if err != nil {
		return rd, fmt.Errorf("count stored events: %w", err)
	}
	if res.Total != n {
		return rd, fmt.Errorf("store holds %d events, want %d", res.Total, n)
	}
	return rd, nil
}
