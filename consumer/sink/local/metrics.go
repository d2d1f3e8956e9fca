package local

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// metrics are the store's Prometheus metrics. Outcomes are a label with a
// fixed set of values, so cardinality is bounded.
type metrics struct {
	reg           prometheus.Registerer
	events        *prometheus.CounterVec
	writeErrors   prometheus.Counter
	writeDuration prometheus.Histogram
	txEvents      prometheus.Histogram
	txCalls       prometheus.Histogram
	queryDuration prometheus.Histogram
	reused        prometheus.Counter
	pruned        *prometheus.CounterVec
	usedBytes     prometheus.Gauge
}

// Values of the outcome label of auditpipe_localstore_events_total.
const (
	outcomeInserted  = "inserted"
	outcomeDuplicate = "duplicate"
	outcomeInvalid   = "invalid"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reg: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_localstore_events_total",
			Help: "Events handed to the local store, by outcome (inserted, duplicate, invalid).",
		}, []string{"outcome"}),
		reused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_localstore_auditid_reused_total",
			Help: "Events stored although an event with the same cluster, auditID and stage but different content was stored before (a client reused the Audit-ID header); each is marked auditpipe.auditIDReused. Included in events_total{outcome=\"inserted\"}.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_localstore_write_errors_total",
			Help: "Write calls that failed with a database error and committed nothing.",
		}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_write_duration_seconds",
			Help:    "Duration of a Write call: waiting for and running the transaction that holds its batch (shared with concurrent calls), fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		txEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_transaction_events",
			Help:    "Valid events per write transaction (the batches of the Write calls it holds).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		txCalls: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_transaction_writes",
			Help:    "Write calls per write transaction: concurrent calls share one (group commit).",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 32},
		}),
		queryDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_query_duration_seconds",
			Help:    "Duration of a Query call (page and total).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_localstore_pruned_events_total",
			Help: "Events deleted by retention, by reason (age: older than maxAge; size: the store was over maxBytes).",
		}, []string{"reason"}),
		usedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditpipe_localstore_used_bytes",
			Help: "Bytes of the store's pages in use (file size minus free pages, WAL excluded), as retention last measured it.",
		}),
	}
	m.pruned.WithLabelValues(pruneAge)
	m.pruned.WithLabelValues(pruneSize)
	// Pre-create the label values so that dashboards see zeros, not gaps.
	for _, o := range []string{outcomeInserted, outcomeDuplicate, outcomeInvalid} {
		m.events.WithLabelValues(o)
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
	return []prometheus.Collector{m.events, m.reused, m.writeErrors, m.writeDuration, m.txEvents, m.txCalls, m.queryDuration, m.pruned, m.usedBytes}
}

// unregister lets a store be reopened on the same registry (tests, restarts
// of the sink inside one process).
func (m *metrics) unregister() { telemetry.UnregisterAll(m.reg, m.collectors()...) }
