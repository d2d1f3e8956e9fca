// Package group connects the consumer group on the events topic to a sink.
// Each sink runs in its own consumer group with its own Handler (see
// consumer/app), so each commits its own offsets: a CLS outage holds back
// only CLS, and a local-store error only the local store. A batch is
// committed only when the sink has it durably (or reported it as
// permanently unusable), so a crash or an outage delays events but never
// loses them. See docs/decisions/0018-independent-sinks.md.
package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Sink stores processed events. Write returns nil only when every record
// is durable (or is permanently unusable and was reported), or, for a
// Sink that is also a Syncer, once Sync returns nil. An error is
// transient unless wrapped with Permanent: the handler retries the batch
// with backoff while the partition waits.
type Sink interface {
	Name() string
	Write(ctx context.Context, records []kafka.Record) error
}

// Syncer is a Sink whose writes become durable in Sync (see
// eventstore.Syncer). The handler's Sync calls it before the group
// commits offsets.
type Syncer interface {
	Sync(ctx context.Context) error
}

// PermanentError marks a batch a sink can never store: retrying would hold
// the partition for ever.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the handler skips the batch (logged and
// counted as outcome "skipped") instead of retrying it.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Retry is how a handler retries a sink's transient errors.
type Retry struct {
	// Base is the first wait; it doubles per attempt up to Max, with full
	// jitter. Defaults 100ms and 10s.
	Base, Max time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Base <= 0 {
		r.Base = 100 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 10 * time.Second
	}
	return r
}

func (r Retry) wait(attempt int) time.Duration {
	d := min(r.Base<<min(attempt, 20), r.Max)
	return d/2 + rand.N(d/2+1) // half fixed, half jitter: never a hot loop
}

// Handler is the kafka.Handler of one sink's consumer group.
type Handler struct {
	sinks   []Sink
	metrics *Metrics
	logger  *slog.Logger
	retry   Retry
	// failing is the error of the latest write when it failed and no
	// write succeeded since: the sink is down.
	failing atomic.Pointer[error]
}

// Healthy returns the error of the latest sink write when it failed and
// none succeeded since (the sink is down), else nil: a readiness check.
func (h *Handler) Healthy(context.Context) error {
	if p := h.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// NewHandler returns a handler writing every batch to each sink in turn,
// retrying transient errors. Give it one sink: several sinks in one handler
// share one offset and hold each other back (consumer/app runs one group
// per sink).
func NewHandler(sinks []Sink, metrics *Metrics, logger *slog.Logger) *Handler {
	return &Handler{sinks: sinks, metrics: metrics, logger: logger, retry: Retry{}.withDefaults()}
}

// NewSinkHandler returns the handler of one sink's group.
func NewSinkHandler(s Sink, metrics *Metrics, logger *slog.Logger, retry Retry) *Handler {
	return &Handler{sinks: []Sink{s}, metrics: metrics, logger: logger, retry: retry.withDefaults()}
}

// Handle implements kafka.Handler. It returns an error never: a transient
// failure is retried here while the partition waits (returning it would
// make the member leave the group and revoke every partition), a permanent
// one skips the batch.
func (h *Handler) Handle(ctx context.Context, b kafka.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	for _, s := range h.sinks {
		// Lag is set before the sink runs (everything from this batch on is
		// outstanding) and after it succeeds, so a partition stuck on a sink
		// shows its lag as of when it got stuck rather than a stale zero.
		h.setLag(s, b, b.Records[0].Offset)
		if !h.write(ctx, s, b) {
			// Revoked or stopping while the sink waited (a CLS outage,
			// say). By the kafka.Handler contract nothing of this batch is
			// committed now whatever we return, and it comes again to the
			// partition's next owner.
			h.metrics.records.WithLabelValues(s.Name(), "revoked").Add(float64(len(b.Records)))
			h.logger.Info("batch abandoned: partition revoked or consumer stopping; it will be delivered again",
				"sink", s.Name(), "topic", b.Topic, "partition", b.Partition, "first_offset", b.Records[0].Offset)
			return nil
		}
		h.setLag(s, b, b.Records[len(b.Records)-1].Offset+1)
	}
	return nil
}

// Sync implements kafka.Syncer: the group adapters call it before they
// commit offsets, and commit only batches that Handle returned for before
// the call. It syncs every sink that is a Syncer; an error stops the
// member (the uncommitted batches are delivered again).
func (h *Handler) Sync(ctx context.Context) error {
	for _, s := range h.sinks {
		if sy, ok := s.(Syncer); ok {
			if err := sy.Sync(ctx); err != nil {
				return fmt.Errorf("sink %s: sync: %w", s.Name(), err)
			}
		}
	}
	return nil
}

// write writes b to s until it is durable or permanently refused (true),
// or ctx ends (false).
func (h *Handler) write(ctx context.Context, s Sink, b kafka.Batch) bool {
	n := float64(len(b.Records))
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := s.Write(ctx, b.Records)
		if err == nil {
			h.failing.Store(nil)
			h.metrics.records.WithLabelValues(s.Name(), "accepted").Add(n)
			h.metrics.duration.WithLabelValues(s.Name()).Observe(time.Since(start).Seconds())
			if attempt > 0 {
				h.logger.Info("sink recovered", "sink", s.Name(), "topic", b.Topic, "partition", b.Partition, "attempts", attempt+1)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if IsPermanent(err) {
			h.metrics.records.WithLabelValues(s.Name(), "skipped").Add(n)
			h.logger.Error("sink can never store this batch; skipped",
				"sink", s.Name(), "topic", b.Topic, "partition", b.Partition,
				"first_offset", b.Records[0].Offset, "records", len(b.Records), "err", err)
			return true
		}
		wait := h.retry.wait(attempt)
		down := fmt.Errorf("sink %s: write failed: %w", s.Name(), err)
		h.failing.Store(&down)
		h.metrics.records.WithLabelValues(s.Name(), "failed").Add(n)
		h.logger.Warn("sink write failed; retrying while the partition waits",
			"sink", s.Name(), "topic", b.Topic, "partition", b.Partition,
			"first_offset", b.Records[0].Offset, "attempt", attempt+1, "retry_in", wait,
			"err", fmt.Errorf("write %d records: %w", len(b.Records), err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// setLag records HighWatermark - next, where next is the first offset not
// yet durable in sink s.
func (h *Handler) setLag(s Sink, b kafka.Batch, next int64) {
	if b.HighWatermark <= 0 {
		return // the adapter does not know it
	}
	h.metrics.lag.WithLabelValues(s.Name(), b.Topic, strconv.Itoa(int(b.Partition))).Set(float64(max(b.HighWatermark-next, 0)))
}

// Metrics are the consumer stage's metrics.
type Metrics struct {
	records  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_consumer_records_total",
			Help: "Records handed to a sink, by sink and outcome (accepted: durable in the sink; skipped: permanently refused, logged, committed; failed: a write attempt failed and is retried; revoked: not committed, will be delivered again).",
		}, []string{"sink", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "auditpipe_consumer_sink_write_duration_seconds",
			Help:    "Time a sink took to make one batch durable.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"sink"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "auditpipe_consumer_partition_lag_records",
			Help: "Records of a partition not yet durable in a sink: the high watermark seen with the latest batch minus the sink's next offset to commit. Updated per batch; labels are bounded by the sinks and the topic's partition count.",
		}, []string{"sink", "topic", "partition"}),
	}
	if err := telemetry.RegisterAll(reg, m.records, m.duration, m.lag); err != nil {
		return nil, fmt.Errorf("consumer group metrics: %w", err)
	}
	return m, nil
}
