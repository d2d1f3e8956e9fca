package pipeline

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// Outcomes of a raw record, the values of the outcome label.
const (
	OutcomeAccepted      = "accepted"
	OutcomeDroppedPolicy = "dropped_policy"
	OutcomeDLQ           = "dlq"
)

// Metrics are the processor pipeline's Prometheus metrics. Counters are
// only advanced once a batch's output was acknowledged, so that a batch
// the group redelivers is not counted twice.
type Metrics struct {
	// Records counts raw records by outcome.
	Records *prometheus.CounterVec
	// Bytes counts record values read from the raw topic (in) and written
	// to the events and DLQ topics (out).
	Bytes *prometheus.CounterVec
	// BatchDuration is how long handling one batch took, Produce included.
	BatchDuration prometheus.Histogram
	// RedactionFailures counts bodies that redaction replaced whole
	// because it could not read them (it fails closed; see
	// redact.FailedClosed). The events are kept, so this is not a DLQ
	// outcome.
	RedactionFailures prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, like the
// other stages' metrics (registering twice is a wiring bug and an error); a
// nil reg registers nothing, which suits tests and tools that don't
// export.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_processor_records_total",
			Help: "Raw audit records handled by the processor, by outcome (accepted, dropped_policy, dlq).",
		}, []string{"outcome"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_processor_bytes_total",
			Help: "Bytes of record values read from the raw topic (direction=in) and written to the events and DLQ topics (direction=out).",
		}, []string{"direction"}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_processor_batch_duration_seconds",
			Help:    "Time to process one batch of raw records, including producing the output.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14), // 1ms .. ~8s
		}),
		RedactionFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_processor_redaction_failures_total",
			Help: "Request or response bodies of sensitive kinds (Secrets, tokens, credential ConfigMaps) that redaction could not read and replaced whole (fail closed): the event is kept without the body.",
		}),
	}
	// Create every series up front so that rates start from zero rather
	// than appearing with the first event of an outcome.
	for _, o := range []string{OutcomeAccepted, OutcomeDroppedPolicy, OutcomeDLQ} {
		m.Records.WithLabelValues(o)
	}
	for _, d := range []string{"in", "out"} {
		m.Bytes.WithLabelValues(d)
	}
	if reg != nil {
		if err := telemetry.RegisterAll(reg, m.Records, m.Bytes, m.BatchDuration, m.RedactionFailures); err != nil {
			return nil, fmt.Errorf("processor metrics: %w", err)
		}
	}
	return m, nil
}
