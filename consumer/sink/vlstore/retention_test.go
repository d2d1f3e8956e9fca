package vlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// These tests check retention through LogsQL (stored), as write_test.go
// does for the write path; the conformance suite's RetentionByAge,
// RetentionBySize and UsedBytesMetricsAndReopen check the same through
// Query and Search once they exist.

// writeAged writes n events of c1, one a minute from start, with auditIDs
// prefix-00000..., and returns their values.
func writeAged(tb testing.TB, s *Store, prefix string, n, size int, start time.Time) [][]byte {
	tb.Helper()
	values := make([][]byte, n)
	for i := range values {
		values[i] = eventgen.Event("c1", fmt.Sprintf("%s-%05d", prefix, i), size, start.Add(time.Duration(i)*time.Minute))
	}
	res, err := s.Write(context.Background(), values)
	require.NoError(tb, err)
	require.Equal(tb, n, res.Inserted)
	return values
}

// pruneAll runs PruneStep at now until it reports no more work.
func pruneAll(tb testing.TB, s *Store, r eventstore.Retention, now time.Time) (deleted int) {
	tb.Helper()
	for range 100 {
		n, more, err := s.PruneStep(context.Background(), r, now)
		require.NoError(tb, err)
		deleted += n
		if !more {
			return deleted
		}
	}
	tb.Fatal("retention never finished")
	return 0
}

func TestPruneByAgeDropsWholeDays(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	s := openTest(t, dir, eventstore.Options{Registerer: reg}, Config{})
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	writeAged(t, s, "old", 30, 800, now.Add(-10*24*time.Hour))
	// Within MaxAge's day but older than MaxAge: kept at the default day
	// granularity (the bound rounds down to midnight).
	writeAged(t, s, "edge", 5, 800, now.Add(-48*time.Hour-time.Hour))
	writeAged(t, s, "new", 20, 800, now.Add(-time.Hour))
	require.Contains(t, s.vl.PartitionList(), "20261117")

	r := eventstore.Retention{MaxAge: 48 * time.Hour}
	n, more, err := s.PruneStep(context.Background(), r, now)
	require.NoError(t, err)
	require.Equal(t, 30, n)
	require.False(t, more, "no size limit to check next")
	require.Equal(t, 30.0, testutil.ToFloat64(s.metrics.pruned.WithLabelValues(pruneAge)))
	require.Zero(t, testutil.ToFloat64(s.metrics.pruned.WithLabelValues(pruneSize)))
	require.Empty(t, stored(t, s, "auditID:old*"))
	require.Len(t, stored(t, s, "auditID:edge*"), 5)
	require.Len(t, stored(t, s, "auditID:new*"), 20)
	require.NotContains(t, s.vl.PartitionList(), "20261117")
	_, err = os.Stat(filepath.Join(s.path, partitionsDir, "20261117"))
	require.ErrorIs(t, err, os.ErrNotExist, "the partition's directory is removed")
	require.Zero(t, pruneAll(t, s, r, now), "nothing more to do")
	// A late event for the dropped day makes a new partition, and goes
	// at the next step.
	late := eventgen.Event("c1", "late", 800, now.Add(-10*24*time.Hour))
	res, err := s.Write(context.Background(), [][]byte{late})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	require.Len(t, stored(t, s, "auditID:=late"), 1)
	require.Equal(t, 1, pruneAll(t, s, r, now))

	require.NoError(t, s.Close())
	s = openTest(t, dir, eventstore.Options{Registerer: reg}, Config{})
	defer s.Close()
	require.Len(t, stored(t, s, "*"), 25, "the dropped day stays dropped after reopen")
	require.Zero(t, testutil.ToFloat64(s.metrics.pruned.WithLabelValues(pruneAge)), "a new store's counter")
	require.Empty(t, stored(t, s, "auditID:=late"))
}

func TestPruneByAgeBoundaryRowsAndIdentities(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{AgeGranularity: time.Minute})
	defer s.Close()
	// Recent events, so that the identity cache (24h window) holds them.
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	values := writeAged(t, s, "ev", 60, 800, start)
	now := start.Add(2*time.Hour + 25*time.Minute + 30*time.Second)

	r := eventstore.Retention{MaxAge: 2 * time.Hour}
	n := pruneAll(t, s, r, now)
	require.Equal(t, 25, n, "the minutes before now-2h, rounded down to the minute")
	older := "_time:<" + timeLiteral(start.Add(25*time.Minute).UnixNano())
	require.Empty(t, stored(t, s, older+" "+liveRows))
	require.Len(t, stored(t, s, liveRows), 35)
	// What the delete task leaves of the first row of a block: its
	// timestamp and no fields. liveRows is there to skip it.
	require.Equal(t, []map[string]string{{}}, stored(t, s, older))
	require.Len(t, stored(t, s, "auditID:=ev-00025"), 1, "the first event at the bound stays")

	// A pruned event redelivered is stored again (as in the SQLite
	// store, where its row is gone); a kept one is a duplicate.
	res, err := s.Write(ctx, [][]byte{values[3], values[40]})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 1, Duplicates: 1}, res)
	got := stored(t, s, "auditID:=ev-00003", keyReused)
	require.Len(t, got, 1)
	require.Empty(t, got[0][keyReused], "not marked reused: its first copy is gone")
}

// untimed is eventgen's event without a stageTimestamp: its _time is its
// receivedAt, ts.
func untimed(tb testing.TB, auditID string, ts time.Time) []byte {
	tb.Helper()
	var m map[string]any
	require.NoError(tb, json.Unmarshal(eventgen.Event("c1", auditID, 800, ts), &m))
	delete(m, keyStageTS)
	b, err := json.Marshal(m)
	require.NoError(tb, err)
	return b
}

func TestPruneByAgeKeepsEventsWithoutStageTimestamp(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{IdentityWindow: 30 * 24 * time.Hour})
	defer s.Close()
	now := time.Now()
	keptDay := now.Add(-10 * 24 * time.Hour)
	u := [][]byte{untimed(t, "u-0", keptDay), untimed(t, "u-1", keptDay.Add(time.Minute))}
	res, err := s.Write(ctx, u)
	require.NoError(t, err)
	require.Equal(t, 2, res.Inserted)
	old := writeAged(t, s, "old", 5, 800, keptDay)
	writeAged(t, s, "gone", 5, 800, now.Add(-9*24*time.Hour))
	writeAged(t, s, "new", 3, 800, now.Add(-time.Hour))
	name := func(ts time.Time) string { return ts.UTC().Format(partitionName) }
	require.Subset(t, s.vl.PartitionList(), []string{name(keptDay), name(now.Add(-9 * 24 * time.Hour))})

	r := eventstore.Retention{MaxAge: 48 * time.Hour}
	require.Equal(t, 10, pruneAll(t, s, r, now))
	require.Len(t, stored(t, s, "auditID:u*"), 2, "events without a stageTimestamp never expire by age")
	require.Len(t, stored(t, s, liveRows), 5)
	require.Contains(t, s.vl.PartitionList(), name(keptDay), "their day stays, its timed events deleted by a task")
	require.NotContains(t, s.vl.PartitionList(), name(now.Add(-9*24*time.Hour)))

	// The cache forgot the pruned events and kept the others.
	res, err = s.Write(ctx, [][]byte{u[0], old[0]})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 1, Duplicates: 1}, res)
	require.Len(t, stored(t, s, "auditID:=old-00000"), 1)
	require.Equal(t, 1, pruneAll(t, s, r, now), "and the redelivered pruned event is pruned again")
}

func TestPruneBySize(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := openTest(t, t.TempDir(), eventstore.Options{Registerer: reg}, Config{})
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	for d := range 4 {
		writeAged(t, s, fmt.Sprintf("day%d", d), 100, 3000, now.Add(time.Duration(d-3)*24*time.Hour-2*time.Hour))
	}
	used, err := s.UsedBytes(ctx)
	require.NoError(t, err)
	limit := used / 2
	r := eventstore.Retention{MaxBytes: limit}
	deleted := pruneAll(t, s, r, now)
	after, err := s.UsedBytes(ctx)
	require.NoError(t, err)
	require.LessOrEqual(t, after, limit)
	left := len(stored(t, s, liveRows))
	require.Equal(t, 400, left+deleted)
	require.Positive(t, left, "not everything")
	require.Equal(t, float64(deleted), testutil.ToFloat64(s.metrics.pruned.WithLabelValues(pruneSize)))
	require.Len(t, stored(t, s, "auditID:=day3-00099"), 1, "the newest stays")
	require.Empty(t, stored(t, s, "auditID:=day0-00000"), "the oldest went first")
	// What is left is the newest: nothing older than the oldest kept.
	kept := stored(t, s, liveRows+" | stats min(_time) as t", "t")
	require.Len(t, kept, 1)
	oldest, err := time.Parse(time.RFC3339Nano, kept[0]["t"])
	require.NoError(t, err)
	require.Empty(t, stored(t, s, "_time:<"+timeLiteral(oldest.UnixNano())+" "+liveRows))
	require.Zero(t, pruneAll(t, s, r, now), "within the limit now")
}

func TestRunRetentionKeepsUsedBytesAndPrunes(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	s := openTest(t, dir, eventstore.Options{Registerer: reg}, Config{})
	now := time.Now()
	writeAged(t, s, "old", 10, 800, now.Add(-5*24*time.Hour))
	writeAged(t, s, "new", 10, 800, now.Add(-time.Hour))
	gauge := func() float64 { return testutil.ToFloat64(s.metrics.usedBytes) }
	require.Zero(t, gauge(), "not measured yet")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunRetention(ctx, eventstore.Retention{MaxAge: 48 * time.Hour, Interval: 10 * time.Millisecond})
	}()
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(s.metrics.pruned.WithLabelValues(pruneAge)) == 10 && gauge() > 0
	}, time.Minute, 10*time.Millisecond)
	cancel()
	<-done
	require.Len(t, stored(t, s, "*"), 10)
	used, err := s.UsedBytes(context.Background())
	require.NoError(t, err)
	require.Equal(t, float64(used), gauge())
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	require.NoError(t, s.Close())
	_, err = s.UsedBytes(context.Background())
	require.Error(t, err, "closed")
	_, _, err = s.PruneStep(context.Background(), eventstore.Retention{MaxAge: time.Hour}, now)
	require.Error(t, err, "closed")
	s = openTest(t, dir, eventstore.Options{Registerer: reg}, Config{})
	require.NoError(t, s.Close(), "the metrics were unregistered: reopened on the same registry")
}

// BenchmarkPruneBoundary measures a prune whose bound falls inside a day
// (AgeGranularity below a day): a delete task rewrites the day's parts
// holding older rows, with the writers held off meanwhile. The store holds
// one day of events, force-merged as an old day would be; each iteration
// moves the bound an hour on (about 1/24 of the day deleted, the rest
// rewritten). ns/op is the wall time writers wait.
//
//	go test -run '^$' -bench BenchmarkPruneBoundary -benchtime 5x ./sink/vlstore/
func BenchmarkPruneBoundary(b *testing.B) {
	const events, batch, size = 100_000, 5000, 1400
	dayStart := time.Now().Add(-3 * 24 * time.Hour).Truncate(24 * time.Hour)
	s := openTest(b, b.TempDir(), eventstore.Options{}, Config{AgeGranularity: time.Minute})
	defer s.Close()
	for i := 0; i < events; i += batch {
		values := make([][]byte, batch)
		for j := range values {
			ts := dayStart.Add(time.Duration(i+j) * (24 * time.Hour / events))
			values[j] = eventgen.Event("c1", fmt.Sprintf("ev-%d", i+j), size, ts)
		}
		if _, err := s.Write(context.Background(), values); err != nil {
			b.Fatal(err)
		}
	}
	s.vl.MustForceMerge("")
	r := eventstore.Retention{MaxAge: time.Hour}
	if b.N > 23 {
		b.Fatal("at most 23 iterations: one hour of the day each")
	}
	deleted := 0
	cpu0 := cpuSeconds(b)
	b.ResetTimer()
	for i := range b.N {
		n, _, err := s.PruneStep(context.Background(), r, dayStart.Add(time.Duration(i+2)*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		deleted += n
	}
	b.ReportMetric((cpuSeconds(b)-cpu0)/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(deleted)/float64(b.N), "deleted/op")
}

// cpuSeconds is the process's CPU time (user + system) so far: the delete
// task runs in the storage's goroutines, so the benchmark's own time does
// not show its cost.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func TestClustersAfterRowDelete(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{AgeGranularity: time.Minute})
	defer s.Close()
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	var values [][]byte
	for i := range 10 {
		values = append(values,
			eventgen.Event("gone", fmt.Sprintf("g-%d", i), 800, start.Add(time.Duration(i)*time.Minute)),
			eventgen.Event("kept", fmt.Sprintf("k-%d", i), 800, start.Add(time.Duration(30+i)*time.Minute)))
	}
	_, err := s.Write(ctx, values)
	require.NoError(t, err)
	got, err := s.Clusters(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"gone", "kept"}, got)
	require.Equal(t, 10, pruneAll(t, s, eventstore.Retention{MaxAge: 2 * time.Hour}, start.Add(2*time.Hour+20*time.Minute)))
	got, err = s.Clusters(ctx)
	require.NoError(t, err)
	// A delete task leaves a fieldless row only in blocks it deletes
	// part of (see TestPruneByAgeBoundaryRowsAndIdentities); a stream
	// deleted whole leaves nothing for Clusters to find.
	require.Equal(t, []string{"kept"}, got, "a cluster whose events were all deleted is not listed")
}

// TestPruneBySizeWholeDays: retention by size frees whole days, the
// oldest first, and never the newest: a day's events stay in its event
// file until the day is dropped, so deleting rows of a day frees little
// (before, round after round deleted the newest day's events and the
// store stayed over the limit). A store whose one day is over the limit
// keeps it.
func TestPruneBySizeWholeDays(t *testing.T) {
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{})
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	writeAged(t, s, "today", 200, 3000, now.Add(-time.Hour))
	used, err := s.UsedBytes(ctx)
	require.NoError(t, err)
	r := eventstore.Retention{MaxBytes: used / 4}
	require.Zero(t, pruneAll(t, s, r, now), "one day: nothing to drop")
	require.Len(t, stored(t, s, liveRows), 200)

	writeAged(t, s, "older", 200, 3000, now.Add(-3*24*time.Hour))
	require.Equal(t, 200, pruneAll(t, s, r, now), "the older day, whole")
	require.Len(t, stored(t, s, liveRows), 200)
	require.Len(t, stored(t, s, "auditID:=today-00000"), 1)
}
