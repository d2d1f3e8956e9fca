package bench

// Adapter for the processor stage: the real pipeline handler (TKE default
// policy) under the real sarama consumer group, writing with sarama, as
// deploy/local/allinone wires it.

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
)

type processorLeg struct {
	k      *kafkaEnv
	loader kafka.Producer // loads the raw topic before a round
	prod   kafka.Producer // the stage's producer, shared by the baseline
	pol    *policy.Policy
}

func newProcessorLeg(_ context.Context, e *env) (leg, error) {
	k, err := startKafka(e)
	if err != nil {
		return nil, err
	}
	l := &processorLeg{k: k}
	if l.pol, err = policy.Load(policies.TKEDefaultName, policies.TKEDefault); err != nil {
		k.close()
		return nil, err
	}
	if l.loader, err = kafkago.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-loader"}); err != nil {
		k.close()
		return nil, err
	}
	if l.prod, err = saramakafka.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-processor"}); err != nil {
		_ = l.loader.Close()
		k.close()
		return nil, err
	}
	return l, nil
}

func (l *processorLeg) close() error {
	err := l.prod.Close()
	_ = l.loader.Close()
	l.k.close()
	return err
}

func (l *processorLeg) round(ctx context.Context, r int) (Round, error) {
	o := l.k.opts
	topics, pass, err := l.k.topics(ctx, r)
	if err != nil {
		return Round{}, err
	}
	records := rawRecords(topics.Raw, "bench", l.k.gen.Next(o.Events), time.Now())
	if err := produceAll(ctx, l.loader, records, o.BatchSize, o.Concurrency); err != nil {
		return Round{}, err
	}
	var h kafka.Handler = passThrough(l.prod, pass)
	if l.k.unit.Variant == VariantStage {
		metrics, err := pipeline.NewMetrics(prometheus.NewRegistry())
		if err != nil {
			return Round{}, err
		}
		p, err := pipeline.New(pipeline.Config{Topics: topics}, l.pol, l.prod, metrics, l.k.logger)
		if err != nil {
			return Round{}, fmt.Errorf("pipeline: %w", err)
		}
		h = p
	}
	return l.k.drain(ctx, topics.Raw, l.k.name(r, "group"), h, len(records))
}
