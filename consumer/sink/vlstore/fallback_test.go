package vlstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// TestFallbackBound: a search the fallback would evaluate over more
// candidates than the bound is the caller's error; a narrower one (or a
// native one) runs.
func TestFallbackBound(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "vlogs"), eventstore.Options{}, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	ctx := context.Background()
	var values [][]byte
	start := time.Now().Add(-time.Hour)
	for i := range 20 {
		values = append(values, eventgen.Event(fmt.Sprintf("c%d", i%2), fmt.Sprintf("id-%02d", i), 800, start.Add(time.Duration(i)*time.Second)))
	}
	_, err = s.Write(ctx, values)
	require.NoError(t, err)
	run := func(query string, req eventstore.SearchRequest) (eventstore.SearchResult, error) {
		q, err := cql.Parse(query)
		require.NoError(t, err)
		req.Query = q
		return s.search(ctx, req, 10)
	}
	_, err = run(`deplo*er`, eventstore.SearchRequest{}) // a wildcard inside a word: the fallback, 20 candidates
	var ie *eventstore.InvalidSearchError
	require.True(t, errors.As(err, &ie), "got %v", err)
	require.Equal(t, "q", ie.Param)
	res, err := run(`deplo*er`, eventstore.SearchRequest{Cluster: "c1"}) // 10 candidates
	require.NoError(t, err)
	require.Equal(t, 10, res.Total)
	res, err = run(`verb:update`, eventstore.SearchRequest{}) // native: no bound
	require.NoError(t, err)
	require.Equal(t, 20, res.Total)
}

// TestQueryDurationMetric: every Query and Search is observed.
func TestQueryDurationMetric(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, err := Open(filepath.Join(t.TempDir(), "vlogs"), eventstore.Options{Registerer: reg}, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	ctx := context.Background()
	_, err = s.Query(ctx, eventstore.Query{})
	require.NoError(t, err)
	q, err := cql.Parse("deployer")
	require.NoError(t, err)
	_, err = s.Search(ctx, eventstore.SearchRequest{Query: q})
	require.NoError(t, err)
	require.Equal(t, uint64(2), histogramCount(t, reg, "auditpipe_localstore_query_duration_seconds"))
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSearchTempDir: the fallback's temporary stores go under
// SearchTempDir and are gone after each search; Open clears what a killed
// process left there.
func TestSearchTempDir(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "vlogs.search-tmp")
	stale := filepath.Join(tmp, searchTempPattern+"123")
	require.NoError(t, os.MkdirAll(stale, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(stale, "search.db"), []byte("left by a killed process"), 0o600))
	s, err := Open(filepath.Join(dir, "vlogs"), eventstore.Options{}, Config{SearchTempDir: tmp})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoDirExists(t, stale)

	ctx := context.Background()
	_, err = s.Write(ctx, [][]byte{eventgen.Event("c1", "id-1", 800, time.Now())})
	require.NoError(t, err)
	var seen []string
	q, err := cql.Parse(`deplo*er`) // a wildcard inside a word: the fallback
	require.NoError(t, err)
	res, err := s.search(ctx, eventstore.SearchRequest{Query: q, Limit: 10, Cluster: "c1"}, 10)
	require.NoError(t, err)
	require.Equal(t, 1, res.Total)
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	for _, e := range entries {
		seen = append(seen, e.Name())
	}
	require.Empty(t, seen, "the temporary store is removed after the search")

	// And it is SearchTempDir that the fallback uses: without it, it fails.
	require.NoError(t, os.Remove(tmp))
	require.NoError(t, os.WriteFile(tmp, nil, 0o600))
	_, err = s.search(ctx, eventstore.SearchRequest{Query: q, Limit: 10, Cluster: "c1"}, 10)
	require.ErrorContains(t, err, "temporary store")
}
