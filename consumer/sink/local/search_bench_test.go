package local_test

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/storebench"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// BenchmarkSearch measures CLS queries on a store of 1,000,000 events
// (AUDITPIPE_SEARCH_BENCH_EVENTS overrides the count): field queries with a
// time range, full-text queries and GROUP BY analyses (storebench, the
// same events and queries as vlstore's BenchmarkSearch). Each
// sub-benchmark reports the p50 and p95 latency of its queries (a
// different time window or value per iteration). The store is built once
// per run, in a temp dir, before the sub-benchmarks; building it takes
// minutes. To compare query changes without rebuilding,
// AUDITPIPE_SEARCH_BENCH_DIR names a directory where the store is built
// once and kept (delete it after a schema change).
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 40x -timeout 60m ./sink/local/
func BenchmarkSearch(b *testing.B) {
	storebench.Run(b, storebench.Engine{
		Open: func(tb testing.TB, dir string) eventstore.Store {
			s, err := local.Open(filepath.Join(dir, "events.db"), local.Options{})
			require.NoError(tb, err)
			return s
		},
		Batch: 5000,
		Built: func(n int) string { return "built-" + strconv.Itoa(n) },
	})
}
