package local_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

func writeAged(t testing.TB, s *local.Store, n, size int, start time.Time) {
	t.Helper()
	values := make([][]byte, n)
	for i := range values {
		values[i] = eventgen.Event("c1", fmt.Sprintf("ev-%s-%05d", start.Format("150405"), i), size, start.Add(time.Duration(i)*time.Minute))
	}
	res, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, n, res.Inserted)
}

func count(t testing.TB, s *local.Store) (events int) {
	t.Helper()
	r, err := s.Query(context.Background(), local.Query{Limit: 1})
	require.NoError(t, err)
	return int(r.Total)
}

func TestRetentionByAge(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := local.Open(filepath.Join(t.TempDir(), "s.db"), local.Options{Registerer: reg})
	require.NoError(t, err)
	defer s.Close()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	writeAged(t, s, 300, 800, now.Add(-10*time.Hour)) // minutes -600 .. -301
	writeAged(t, s, 100, 800, now.Add(-time.Hour))    // minutes -60 .. +39
	r := local.Retention{MaxAge: 2 * time.Hour, StepRows: 120}
	var steps, total int
	for {
		n, more, err := s.PruneStep(context.Background(), r, now)
		require.NoError(t, err)
		require.LessOrEqual(t, n, 120, "a step is bounded")
		total += n
		steps++
		if !more {
			break
		}
	}
	require.Equal(t, 300, total)
	require.Equal(t, 3, steps)
	require.Equal(t, 100, count(t, s))
	require.Equal(t, 300.0, testutil.ToFloat64(prunedCounter(t, reg, "age")))
	// The full-text index lost the deleted events too: a word of theirs
	// finds nothing, one of the kept events still finds them.
	r2, err := s.Query(context.Background(), local.Query{Text: "ev-020000-00001", Limit: 5})
	require.NoError(t, err)
	require.Zero(t, r2.Total)
	r2, err = s.Query(context.Background(), local.Query{Text: "ev-110000-00001", Limit: 5})
	require.NoError(t, err)
	require.Equal(t, 1, r2.Total)
}

func TestRetentionBySize(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "s.db"), local.Options{})
	require.NoError(t, err)
	defer s.Close()
	now := time.Now()
	for i := range 4 {
		writeAged(t, s, 150, 3000, now.Add(time.Duration(i-10)*time.Hour))
	}
	used, err := s.UsedBytes(context.Background())
	require.NoError(t, err)
	limit := used / 2
	r := local.Retention{MaxBytes: limit, StepRows: 100}
	for {
		_, more, err := s.PruneStep(context.Background(), r, now)
		require.NoError(t, err)
		if !more {
			break
		}
	}
	after, err := s.UsedBytes(context.Background())
	require.NoError(t, err)
	require.LessOrEqual(t, after, limit)
	left := count(t, s)
	require.Greater(t, left, 0)
	require.Less(t, left, 600)
	// The oldest went first: the newest event is still there.
	res, err := s.Query(context.Background(), local.Query{Limit: 1})
	require.NoError(t, err)
	require.NotEmpty(t, res.Events)
	t.Logf("used %d bytes -> %d (limit %d), %d of 600 events kept", used, after, limit, left)
}

func TestRetentionValidate(t *testing.T) {
	require.NoError(t, local.Retention{MaxAge: time.Hour, MaxBytes: 1 << 30}.Validate())
	require.ErrorContains(t, local.Retention{MaxAge: -time.Hour}.Validate(), "retention.maxAge")
	require.ErrorContains(t, local.Retention{MaxBytes: 10}.Validate(), "retention.maxBytes")
}

func prunedCounter(t testing.TB, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "auditpipe_localstore_pruned_events_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					v = m.GetCounter().GetValue()
				}
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	g.Set(v)
	return g
}

// TestRetentionBySizeSmallExcess: a store a little over MaxBytes loses
// about the excess, not a whole step (StepRows 2000 would be every event
// here): at most twice the events the excess is worth.
func TestRetentionBySizeSmallExcess(t *testing.T) {
	s, err := local.Open(filepath.Join(t.TempDir(), "s.db"), local.Options{})
	require.NoError(t, err)
	defer s.Close()
	now := time.Now()
	writeAged(t, s, 600, 3000, now.Add(-10*time.Hour))
	used, err := s.UsedBytes(context.Background())
	require.NoError(t, err)
	excess := used / 20 // 5%: about 30 of the 600 events
	r := local.Retention{MaxBytes: used - excess}
	deleted := 0
	for {
		n, more, err := s.PruneStep(context.Background(), r, now)
		require.NoError(t, err)
		deleted += n
		if !more {
			break
		}
	}
	after, err := s.UsedBytes(context.Background())
	require.NoError(t, err)
	require.LessOrEqual(t, after, r.MaxBytes)
	worth := int(excess * 600 / used)
	require.Positive(t, deleted)
	require.LessOrEqual(t, deleted, 2*worth+2, "deleted %d events for an excess worth %d", deleted, worth)
	require.Equal(t, 600-deleted, count(t, s))
}
