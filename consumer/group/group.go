// Package group connects the consumer group on the events topic to the
// sinks. A batch is handed to every sink; only when all of them have it
// durably does the handler return nil and let the group commit past it, so
// a crash or a sink outage delays events but never loses them.
package group

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink stores processed events. Write returns nil only when every record
// is durable (or is permanently unusable and was reported); an error means
// "retry": nothing is committed and the records come again.
type Sink interface {
	Name() string
	Write(ctx context.Context, records []kafka.Record) error
}

// Handler is the kafka.Handler of the consumer stage.
type Handler struct {
	sinks   []Sink
	metrics *Metrics
	logger  *slog.Logger
}

// NewHandler returns a handler writing every batch to each sink in turn.
func NewHandler(sinks []Sink, metrics *Metrics, logger *slog.Logger) *Handler {
	return &Handler{sinks: sinks, metrics: metrics, logger: logger}
}

// Handle implements kafka.Handler.
func (h *Handler) Handle(ctx context.Context, b kafka.Batch) error {
	for _, s := range h.sinks {
		start := time.Now()
		if err := s.Write(ctx, b.Records); err != nil {
			h.metrics.records.WithLabelValues(s.Name(), "failed").Add(float64(len(b.Records)))
			return fmt.Errorf("sink %s: write %d records of %s/%d from offset %d: %w",
				s.Name(), len(b.Records), b.Topic, b.Partition, b.Records[0].Offset, err)
		}
		h.metrics.records.WithLabelValues(s.Name(), "accepted").Add(float64(len(b.Records)))
		h.metrics.duration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
	}
	return nil
}

// Metrics are the consumer stage's metrics.
type Metrics struct {
	records  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_consumer_records_total",
			Help: "Records handed to a sink, by sink and outcome (accepted: durable in the sink; failed: will be delivered again).",
		}, []string{"sink", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "auditpipe_consumer_sink_write_duration_seconds",
			Help:    "Time a sink took to make one batch durable.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"sink"}),
	}
	reg.MustRegister(m.records, m.duration)
	return m
}
