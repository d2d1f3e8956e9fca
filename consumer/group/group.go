// Package group connects the consumer group on the events topic to the
// sinks. A batch is handed to every sink; only when all of them have it
// durably does the handler return nil and let the group commit past it, so
// a crash or a sink outage delays events but never loses them.
package group

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
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
	if len(b.Records) == 0 {
		return nil
	}
	// Lag is set before the sinks run (everything from this batch on is
	// outstanding) and after they succeed, so a partition stuck on a sink
	// shows its lag as of when it got stuck rather than a stale zero.
	h.setLag(b, b.Records[0].Offset)
	for _, s := range h.sinks {
		start := time.Now()
		if err := s.Write(ctx, b.Records); err != nil {
			if ctx.Err() != nil {
				// Revoked or stopping while a sink waited (a CLS outage,
				// say). By the kafka.Handler contract nothing of this batch
				// is committed now whatever we return, and it comes again to
				// the partition's next owner. An error would make the member
				// leave the group and revoke every other partition too.
				h.metrics.records.WithLabelValues(s.Name(), "revoked").Add(float64(len(b.Records)))
				h.logger.Info("batch abandoned: partition revoked or consumer stopping; it will be delivered again",
					"sink", s.Name(), "topic", b.Topic, "partition", b.Partition, "first_offset", b.Records[0].Offset)
				return nil
			}
			h.metrics.records.WithLabelValues(s.Name(), "failed").Add(float64(len(b.Records)))
			return fmt.Errorf("sink %s: write %d records of %s/%d from offset %d: %w",
				s.Name(), len(b.Records), b.Topic, b.Partition, b.Records[0].Offset, err)
		}
		h.metrics.records.WithLabelValues(s.Name(), "accepted").Add(float64(len(b.Records)))
		h.metrics.duration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
	}
	h.setLag(b, b.Records[len(b.Records)-1].Offset+1)
	return nil
}

// setLag records HighWatermark - next, where next is the first offset not
// yet durable in every sink.
func (h *Handler) setLag(b kafka.Batch, next int64) {
	if b.HighWatermark <= 0 {
		return // the adapter does not know it
	}
	h.metrics.lag.WithLabelValues(b.Topic, strconv.Itoa(int(b.Partition))).Set(float64(max(b.HighWatermark-next, 0)))
}

// Metrics are the consumer stage's metrics.
type Metrics struct {
	records  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_consumer_records_total",
			Help: "Records handed to a sink, by sink and outcome (accepted: durable in the sink; failed, revoked: not committed, will be delivered again).",
		}, []string{"sink", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "auditpipe_consumer_sink_write_duration_seconds",
			Help:    "Time a sink took to make one batch durable.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"sink"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "auditpipe_consumer_partition_lag_records",
			Help: "Records of a partition not yet durable in every sink: the high watermark seen with the latest batch minus the next offset to commit. Updated per batch; labels are bounded by the topic's partition count.",
		}, []string{"topic", "partition"}),
	}
	reg.MustRegister(m.records, m.duration, m.lag)
	return m
}
