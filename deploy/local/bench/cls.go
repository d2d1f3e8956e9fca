package bench

// Adapter for the consumer's CLS leg: the real group handler with the CLS
// sink (the official SDK's async producer) sending to the local CLS server
// (consumer/sink/cls/clslocal, protocol-faithful: signature, LZ4, protobuf)
// on loopback. The events topic is loaded the same way as for the
// consumer's local-store leg; the baseline is the same pass-through.

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
)

const (
	clsTopic  = "auditbench-topic"
	clsID     = "AKIDauditbench"
	clsSecret = "auditbench-secret"
)

type clsLeg struct {
	*consumerLeg
}

func newCLSLeg(ctx context.Context, e *env) (leg, error) {
	l, err := newConsumerLeg(ctx, e)
	if err != nil {
		return nil, err
	}
	return &clsLeg{consumerLeg: l.(*consumerLeg)}, nil
}

func (l *clsLeg) round(ctx context.Context, r int) (Round, error) {
	if l.k.unit.Variant == VariantBaseline {
		return l.consumerLeg.round(ctx, r)
	}
	n, err := l.loadEvents(ctx, r)
	if err != nil {
		return Round{}, err
	}
	srv := clslocal.New(clslocal.Options{
		Credentials: []clslocal.Credential{{SecretID: clsID, SecretKey: clsSecret}},
		DiscardLogs: true,
		Logger:      l.k.logger,
	})
	url, stop, err := serve(srv.Handler())
	if err != nil {
		return Round{}, err
	}
	defer stop()
	reg := prometheus.NewRegistry()
	sink, err := cls.New(cls.Config{Endpoint: url, SecretID: clsID, SecretKey: clsSecret, DefaultTopicID: clsTopic},
		func(string) (string, bool) { return "", false }, reg, l.k.logger)
	if err != nil {
		return Round{}, fmt.Errorf("cls sink: %w", err)
	}
	defer func() { _ = sink.Close(10 * time.Second) }()
	metrics, err := group.NewMetrics(reg)
	if err != nil {
		return Round{}, err
	}
	h := group.NewHandler([]group.Sink{sink}, metrics, l.k.logger)
	rd, err := l.k.drain(ctx, l.k.name(r, "events"), l.k.name(r, "group"), h, n)
	if err != nil {
		return rd, err
	}
	// Counts must add up: the sink returned only after CLS acknowledged.
	if got := srv.LogCount(clsTopic); got != int64(n) {
		return rd, fmt.Errorf("local CLS server accepted %d logs, want %d", got, n)
	}
	return rd, nil
}
