package cls

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// Outcome label values.
const (
	outcomeSent      = "sent"
	outcomeInvalid   = "invalid"
	outcomeUnrouted  = "unrouted"
	outcomeDuplicate = "duplicate"
	outcomeSuccess   = "success"
	outcomeRetryable = "retryable"
	outcomePermanent = "permanent"
)

type metrics struct {
	reg       prometheus.Registerer
	logs      *prometheus.CounterVec
	requests  *prometheus.CounterVec
	truncated prometheus.Counter
	reused    prometheus.Counter
	retryWait prometheus.Histogram
	blocked   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		logs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_clssink_logs_total",
			Help: "Events by outcome: sent (acknowledged by CLS), invalid (not a processed event), unrouted (no CLS topic for the cluster), duplicate (same cluster, auditID, stage and content hash as an event this process sent recently; not sent again).",
		}, []string{"outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_clssink_sends_total",
			Help: "SDK sends (SendLogList calls) by outcome: success, retryable (429, 5xx, network), permanent (401, 403, 404).",
		}, []string{"outcome"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_clssink_truncated_values_total",
			Help: "Values cut to fit CLS's size limits (marked with auditpipe-truncated).",
		}),
		reused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_clssink_auditid_reused_total",
			Help: "Events sent with auditpipe.auditIDReused=true: this process recently sent a different event with the same cluster, auditID and stage (a client reused the Audit-ID header). Reuse across processes or restarts is not seen here; search CLS by the identity.",
		}),
		retryWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_clssink_retry_wait_seconds",
			Help:    "Backoff waits of a partition before re-sending failed chunks.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "auditpipe_clssink_cluster_blocked",
			Help: "1 while CLS refuses a cluster's events permanently (401/403/404); its partition is held. The label is bounded by the fleet registry.",
		}, []string{"cluster"}),
	}
	for _, o := range []string{outcomeSent, outcomeInvalid, outcomeUnrouted, outcomeDuplicate} {
		m.logs.WithLabelValues(o)
	}
	for _, o := range []string{outcomeSuccess, outcomeRetryable, outcomePermanent} {
		m.requests.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	if err := telemetry.RegisterAll(reg, m.collectors()...); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.logs, m.requests, m.truncated, m.reused, m.retryWait, m.blocked}
}

func (m *metrics) unregister() { telemetry.UnregisterAll(m.reg, m.collectors()...) }
