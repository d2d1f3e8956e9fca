package vlstore_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/consumer/internal/cpubench"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/storebench"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
)

// BenchmarkRead measures the read side on a store of 100,000 events
// (varied: three clusters, seven verbs, ~600 B): Query as `make bench`
// polls it (cluster, limit 1, total) and Search, native (selective,
// field, broad, sql-groupby) and through the SQLite fallback
// (fallback-*, sql-fallback). events/cpu-s counts the matching events
// (the total) per CPU-second of the process; for the fallback every
// candidate is loaded into the ephemeral SQLite store, so it is its
// throughput:
//
//	go test -run '^$' -bench BenchmarkRead -benchtime 3x ./sink/vlstore/
func BenchmarkRead(b *testing.B) {
	const n = 100_000
	s, err := vlstore.Open(filepath.Join(b.TempDir(), "vlogs"), eventstore.Options{}, vlstore.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	for chunk := range slices.Chunk(varied(b, n, time.Now().Add(-2*time.Hour)), 1000) {
		if _, err := s.Write(context.Background(), chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("query/cluster-limit1", func(b *testing.B) {
		done := cpubench.Start(b)
		total := 0
		for range b.N {
			res, err := s.Query(context.Background(), eventstore.Query{Cluster: "c1", Limit: 1})
			if err != nil || len(res.Events) != 1 {
				b.Fatal(err, len(res.Events))
			}
			total += res.Total
		}
		done(total)
	})
	b.Run("query/text", func(b *testing.B) {
		done := cpubench.Start(b)
		total := 0
		for range b.N {
			res, err := s.Query(context.Background(), eventstore.Query{Text: "forbidden", Limit: 50})
			if err != nil {
				b.Fatal(err)
			}
			total += res.Total
		}
		done(total)
	})
	for _, tc := range []struct{ name, query string }{
		{"search/selective", `auditID:id-00042`},
		{"search/fallback-one", `auditID:"id-00042"`},
		{"search/fallback-text", `forbidden AND verb:update`},
		{"search/field", `verb:delete AND auditpipe.cluster:c1`},
		{"search/broad", `*`},
		{"search/sql-groupby", `* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY n DESC, verb`},
		{"search/sql-fallback", `* | SELECT verb, count(*) AS n GROUP BY verb`},
	} {
		q, err := cql.Parse(tc.query)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			done := cpubench.Start(b)
			total := 0
			for range b.N {
				res, err := s.Search(context.Background(), eventstore.SearchRequest{Query: q, Limit: 50})
				if err != nil {
					b.Fatal(err)
				}
				if q.SQL != nil {
					total += n // every event is a candidate
				} else {
					total += res.Total
				}
			}
			done(total)
		})
	}
}

// BenchmarkSearch is the SQLite store's BenchmarkSearch (storebench: the
// same 1,000,000 events over a week, the same queries, p50/p95) on this
// store, built with Writes of 1,000 events and Config defaults. A search
// the fallback refuses as too broad counts in refused/op; the log says
// per query whether it is native or takes the fallback.
// AUDITPIPE_SEARCH_BENCH_EVENTS and AUDITPIPE_SEARCH_BENCH_DIR work as
// there (the store kept is <dir>/vlogs):
//
//	go test -run '^$' -bench BenchmarkSearch -benchtime 20x -timeout 60m ./sink/vlstore/
func BenchmarkSearch(b *testing.B) {
	var s *vlstore.Store
	storebench.Run(b, storebench.Engine{
		Open: func(tb testing.TB, dir string) eventstore.Store {
			var err error
			s, err = vlstore.Open(filepath.Join(dir, "vlogs"), eventstore.Options{}, vlstore.Config{})
			if err != nil {
				tb.Fatal(err)
			}
			return s
		},
		Batch:     1000,
		Built:     func(n int) string { return "vlogs-built-" + strconv.Itoa(n) },
		MayRefuse: true,
		Plan:      func(req eventstore.SearchRequest) string { return vlstore.SearchPlan(s, req) },
	})
}
