package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// Metrics are the receiver's Prometheus metrics. The cluster label is
// bounded by the fleet size (every cluster id is bound to a credential).
type Metrics struct {
	requests  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	events    *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	truncated *prometheus.CounterVec
	latency   prometheus.Histogram
	inflight  prometheus.Gauge
	// lastEvent is when each cluster's latest accepted event reached
	// Kafka: "cluster went silent" alerts need a per-cluster series that
	// survives quiet periods, which a counter's rate does not give once
	// the pod restarted.
	lastEvent *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_webhook_requests_total",
			Help: "Webhook requests by HTTP status code.",
		}, []string{"code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_webhook_rejected_requests_total",
			Help: "Webhook requests answered with an error, by reason.",
		}, []string{"reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_events_total",
			Help: "Events received by cluster and outcome (accepted: on the raw topic; dlq: on the dead-letter topic).",
		}, []string{"cluster", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_received_bytes_total",
			Help: "Decoded request body bytes received by cluster.",
		}, []string{"cluster"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_truncated_events_total",
			Help: "Events over maxEventBytes accepted without their request and response bodies, by cluster.",
		}, []string{"cluster"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_producer_batch_duration_seconds",
			Help:    "Time from receiving a batch to Kafka acknowledging all of it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditpipe_producer_webhook_inflight_bytes",
			Help: "Decoded request body bytes held by requests in progress, out of webhook.maxInflightBytes.",
		}),
		lastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "auditpipe_producer_last_event_timestamp_seconds",
			Help: "Unix time at which the latest accepted event of a cluster was acknowledged by Kafka (or spooled), by cluster.",
		}, []string{"cluster"}),
	}
	if err := telemetry.RegisterAll(reg, m.requests, m.rejected, m.events, m.bytes, m.truncated, m.latency, m.inflight, m.lastEvent); err != nil {
		return nil, fmt.Errorf("webhook metrics: %w", err)
	}
	return m, nil
}
