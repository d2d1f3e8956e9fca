package vlstore

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/telemetry"
)

// metrics are the write path's and retention's share of the metrics every
// engine exports (eventstore.Options.Registerer names them), plus the
// checkpoint's own, and the read side's (queryDuration, querymetrics.go).
type metrics struct {
	reg                prometheus.Registerer
	events             *prometheus.CounterVec
	reused             prometheus.Counter
	writeErrors        prometheus.Counter
	writeDuration      prometheus.Histogram
	checkpointDuration prometheus.Histogram
	checkpointRounds   prometheus.Histogram
	checkpointWait     prometheus.Histogram
	groupWrites        prometheus.Histogram
	pruned             *prometheus.CounterVec
	usedBytes          prometheus.Gauge
	queryDuration      prometheus.Histogram
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
			Help: "Write calls that failed and stored nothing.",
		}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_write_duration_seconds",
			Help:    "Duration of a Write call, waiting for the writer and the checkpoint included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		checkpointDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_checkpoint_duration_seconds",
			Help:    "Duration of a VictoriaLogs checkpoint (in-memory parts flushed to fsynced files).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		checkpointRounds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_checkpoint_rounds",
			Help:    "Snapshots a VictoriaLogs checkpoint took until no row was left only in memory (more than 1: a background merge held rows back).",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 16},
		}),
		checkpointWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_checkpoint_merge_wait_seconds",
			Help:    "Part of a VictoriaLogs checkpoint spent waiting for the storage's in-memory merges to end (a snapshot skips the parts in merge); the rest is the snapshot (flush to files, fsync, hard links).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		groupWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "auditpipe_localstore_transaction_writes",
			Help:    "Write calls per checkpoint: concurrent calls share one (group commit).",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 32},
		}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_localstore_pruned_events_total",
			Help: "Events deleted by retention, by reason (age: older than maxAge; size: the store was over maxBytes).",
		}, []string{"reason"}),
		usedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditpipe_localstore_used_bytes",
			Help: "Bytes of the store's compressed parts and indexes, as retention last measured them.",
		}),
		queryDuration: newQueryDuration(),
	}
	m.pruned.WithLabelValues(pruneAge)
	m.pruned.WithLabelValues(pruneSize)
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
	return []prometheus.Collector{m.events, m.reused, m.writeErrors, m.writeDuration, m.checkpointDuration, m.checkpointRounds, m.checkpointWait, m.groupWrites, m.pruned, m.usedBytes, m.queryDuration}
}

// unregister lets a store be reopened on the same registry.
func (m *metrics) unregister() { telemetry.UnregisterAll(m.reg, m.collectors()...) }
