package vlstore

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newQueryDuration is auditpipe_localstore_query_duration_seconds, the
// name and buckets the SQLite store uses (consumer/sink/local/metrics.go),
// so that one dashboard serves both engines.
func newQueryDuration() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "auditpipe_localstore_query_duration_seconds",
		Help:    "Duration of a Query or Search call on the local store.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
}

// observeQuery records a read that started at start.
func (s *Store) observeQuery(start time.Time) {
	s.metrics.queryDuration.Observe(time.Since(start).Seconds())
}
