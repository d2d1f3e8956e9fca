package vlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// These tests check the write path through the storage itself (LogsQL),
// since Query and Search are step 3's; the conformance suite
// (conformance_test.go) checks the same through the Store's API once they
// exist.

func openTest(tb testing.TB, dir string, opts eventstore.Options, cfg Config) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(dir, "vlogs"), opts, cfg)
	require.NoError(tb, err)
	return s
}

// eventKey is where stored puts each event as written (from its file).
const eventKey = "event"

// stored returns the event (under eventKey) and the given fields of the
// events matching the LogsQL filter, sorted by event.
func stored(tb testing.TB, s *Store, filter string, fields ...string) []map[string]string {
	tb.Helper()
	names := append([]string{fieldDoc, "_time"}, fields...)
	for i, n := range names {
		names[i] = strconv.Quote(n)
	}
	q, err := logstorage.ParseQuery(filter + " | fields " + strings.Join(names, ", "))
	require.NoError(tb, err)
	var mu sync.Mutex
	var out []map[string]string
	qctx := logstorage.NewQueryContext(context.Background(), &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	s.visible()
	require.NoError(tb, s.vl.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		mu.Lock()
		defer mu.Unlock()
		for i := range db.RowsCount() {
			m := map[string]string{}
			for _, c := range db.GetColumns(false) {
				if c.Values[i] != "" {
					m[strings.Clone(c.Name)] = strings.Clone(c.Values[i])
				}
			}
			out = append(out, m)
		}
	}))
	for _, m := range out {
		// Rows without a reference: a delete task's leftovers, or a
		// filter ending in a pipe of its own (stats).
		if m[fieldDoc] != "" {
			ref, err := parseDocRef(m[fieldDoc])
			require.NoError(tb, err)
			ts, err := time.Parse(time.RFC3339Nano, m["_time"])
			require.NoError(tb, err)
			m[eventKey], err = s.docs.get(ts.UTC().Format(partitionName), ref)
			require.NoError(tb, err)
		}
		delete(m, fieldDoc)
		delete(m, "_time")
	}
	slices.SortFunc(out, func(a, b map[string]string) int { return strings.Compare(a[eventKey], b[eventKey]) })
	return out
}

func TestWriteIdempotentAcrossReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir, eventstore.Options{}, Config{})
	events := localtest.All(t)
	values := localtest.Values(events)
	res, err := s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: len(values)}, res)
	require.Len(t, stored(t, s, "*"), len(values))

	res, err = s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: len(values)}, res, "a redelivery")
	again := events[0].ProcessedEvent
	again.Pipeline.ReceivedAt = again.Pipeline.ReceivedAt.Add(time.Minute)
	retry, err := json.MarshalIndent(again, "", "  ")
	require.NoError(t, err)
	res, err = s.Write(ctx, [][]byte{retry})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 1}, res, "an apiserver retry, pretty-printed")
	require.Len(t, stored(t, s, "*"), len(values))

	// The event as written, the cluster as the stream and a field.
	got := stored(t, s, fmt.Sprintf("auditID:=%q", events[0].AuditID), keyCluster, "verb")
	require.Len(t, got, 1)
	require.JSONEq(t, string(values[0]), got[0][eventKey])
	require.Equal(t, events[0].Pipeline.Cluster, got[0][keyCluster])
	require.Equal(t, events[0].Verb, got[0]["verb"])

	// The fixtures are from 2019-2020, older than the identity window:
	// reopened, the store finds them with the per-batch lookup; recent
	// events come from the window loaded at Open.
	now := time.Now().Add(-time.Hour)
	recent := [][]byte{eventgen.Event("c1", "recent-1", 1000, now), eventgen.Event("c1", "recent-2", 1000, now)}
	res, err = s.Write(ctx, recent)
	require.NoError(t, err)
	require.Equal(t, 2, res.Inserted)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is safe twice")

	s = openTest(t, dir, eventstore.Options{}, Config{})
	defer s.Close()
	require.Equal(t, 2, s.ids.len(), "the window holds the recent events only")
	res, err = s.Write(ctx, append(append([][]byte{}, recent...), values...))
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: len(values) + 2}, res)
	require.Len(t, stored(t, s, "*"), len(values)+2)
}

func TestWriteInvalidValues(t *testing.T) {
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{})
	defer s.Close()
	good := localtest.GKE(t)[0]
	mutate := func(f func(*schemas.ProcessedEvent)) []byte {
		ev := good.ProcessedEvent
		f(&ev)
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		return b
	}
	values := [][]byte{
		good.JSON,
		[]byte(`{"kind":"Event"`),
		mutate(func(e *schemas.ProcessedEvent) { e.Pipeline.Cluster = "" }),
		mutate(func(e *schemas.ProcessedEvent) { e.AuditID = "" }),
		mutate(func(e *schemas.ProcessedEvent) { e.Stage = "" }),
		[]byte(`[1,2,3]`),
		[]byte("{\"auditID\":\"\xff\xfe\"}"),
		nil,
		[]byte(`{"auditID":7,"stage":"x","auditpipe":{"cluster":"c"}}`),
		// Times the storage cannot keep as _time are stored all the same,
		// as events without a stageTimestamp (the value stays in _msg):
		// a month ahead, and a fixture's zero time moved by a replay.
		mutate(func(e *schemas.ProcessedEvent) {
			e.AuditID = "future"
			e.StageTimestamp = time.Now().Add(30 * 24 * time.Hour)
		}),
		mutate(func(e *schemas.ProcessedEvent) {
			e.AuditID = "ancient"
			e.StageTimestamp = time.Date(7, 8, 14, 13, 59, 45, 0, time.UTC)
		}),
	}
	res, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, 3, res.Inserted)
	var idx []int
	for _, iv := range res.InvalidValues {
		idx = append(idx, iv.Index)
	}
	require.Equal(t, []int{1, 2, 3, 4, 5, 6, 7, 8}, idx)
	untimed := stored(t, s, `auditID:in(future, ancient) -stageTimestamp:*`)
	require.Len(t, untimed, 2, "stored without the stageTimestamp field")
	require.Contains(t, res.InvalidValues[1].Reason, "auditpipe.cluster")
	require.Contains(t, res.InvalidValues[2].Reason, "auditID")
	require.Contains(t, res.InvalidValues[3].Reason, "stage")
	require.Contains(t, res.InvalidValues[7].Reason, "auditID: not a string")
	require.Len(t, stored(t, s, "*"), 3)
}

func TestWriteReusedAuditID(t *testing.T) {
	ctx := context.Background()
	var hooked [][]byte
	s := openTest(t, t.TempDir(), eventstore.Options{OnReused: func(_ context.Context, events [][]byte) {
		hooked = append(hooked, events...)
	}}, Config{})
	defer s.Close()
	// A recent event: the in-memory window decides.
	base := localtest.GKE(t)[0].ProcessedEvent
	base.StageTimestamp = time.Now().Add(-time.Minute).UTC()
	withHash := func(h string, change func(*schemas.ProcessedEvent)) []byte {
		pe := base
		pe.Pipeline.ContentHash = h
		if change != nil {
			change(&pe)
		}
		b, err := json.Marshal(pe)
		require.NoError(t, err)
		return b
	}
	harmless := withHash(strings.Repeat("a", 64), nil)
	malicious := withHash(strings.Repeat("b", 64), func(pe *schemas.ProcessedEvent) { pe.User.Username = "mallory" })
	res, err := s.Write(ctx, [][]byte{harmless, malicious, harmless})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 2, Reused: 1, Duplicates: 1}, res)
	res, err = s.Write(ctx, [][]byte{malicious, harmless})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 2}, res)
	require.Len(t, hooked, 1)
	require.Equal(t, string(malicious), string(hooked[0]), "the hook gets the event as written")

	marked := stored(t, s, `"auditpipe.auditIDReused":=true`, "user.username")
	require.Len(t, marked, 1)
	require.Equal(t, "mallory", marked[0]["user.username"])
	var want, got map[string]any
	require.NoError(t, json.Unmarshal(malicious, &want))
	want[schemas.PipelineKey].(map[string]any)["auditIDReused"] = true
	require.NoError(t, json.Unmarshal([]byte(marked[0][eventKey]), &got))
	require.Equal(t, want, got, "stored as written plus the marker")
	require.True(t, strings.HasPrefix(marked[0][eventKey], string(malicious[:40])), "member order kept")

	// Without a hash, the fields decide.
	noHash := withHash("", func(pe *schemas.ProcessedEvent) { pe.Verb = "patch" })
	res, err = s.Write(ctx, [][]byte{noHash, noHash})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Inserted: 1, Reused: 1, Duplicates: 1}, res)
}

func TestMarkReused(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"auditpipe":{"cluster":"c"},"z":{"x":"}"}}`: `{"a":1,"auditpipe":{"cluster":"c","auditIDReused":true},"z":{"x":"}"}}`,
		`{"auditpipe":{}}`: `{"auditpipe":{"auditIDReused":true}}`,
		`{"auditpipe":{"auditIDReused":false,"cluster":"c"}}`: `{"auditpipe":{"auditIDReused":true,"cluster":"c"}}`,
		// Marked already (a migrated copy): byte for byte as it was.
		`{"auditpipe":{"schemaVersion":1,"cluster":"c","auditIDReused":true,"origin":{"offset":0}}}`: `{"auditpipe":{"schemaVersion":1,"cluster":"c","auditIDReused":true,"origin":{"offset":0}}}`,
		`{"auditpipe":{"z":1,"auditIDReused":false,"a":2}}`:                                          `{"auditpipe":{"z":1,"auditIDReused":true,"a":2}}`,
	} {
		got, err := markReused(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := markReused(`{"auditpipe":1}`)
	require.Error(t, err)
}

// TestWriteDurableOnReturn writes in a child process that exits without
// Close right after Write returned (as a crash would, minus the kernel's
// page cache: that needs a power cut): the parent finds every event. With
// the checkpoint off the rows would sit in memory for the flush interval
// and be lost.
func TestWriteDurableOnReturn(t *testing.T) {
	if dir := os.Getenv("VLSTORE_CRASH_DIR"); dir != "" {
		mode := os.Getenv("VLSTORE_CRASH_MODE")
		s := openTest(t, dir, eventstore.Options{}, Config{FlushInterval: time.Hour, DeferSync: mode != "write"})
		values := make([][]byte, 300)
		for i := range values {
			values[i] = eventgen.Event("c1", fmt.Sprintf("crash-%03d", i), 1000, time.Now())
		}
		res, err := s.Write(context.Background(), values)
		require.NoError(t, err)
		require.Equal(t, 300, res.Inserted)
		if mode == "sync" {
			require.NoError(t, s.Sync(context.Background()))
		}
		os.Exit(0) // the point: no Close, no deferred work
	}
	// DeferSync: Write alone is not durable (that the test can tell), Sync
	// is.
	for mode, want := range map[string]int{"defer": 0, "sync": 300} {
		dir := t.TempDir()
		crashChild(t, "TestWriteDurableOnReturn", dir, mode)
		s := openTest(t, dir, eventstore.Options{}, Config{})
		require.Len(t, stored(t, s, "*"), want, "DeferSync, mode %s", mode)
		require.NoError(t, s.Close())
	}

	dir := t.TempDir()
	crashChild(t, "TestWriteDurableOnReturn", dir, "write")
	// The child held the storage's lock file; it is released with the
	// process.
	s := openTest(t, dir, eventstore.Options{}, Config{})
	t.Cleanup(func() { require.NoError(t, s.Close()) }) // the store open last
	require.Len(t, stored(t, s, "*"), 300)
	require.Equal(t, 300, s.ids.len())

	// A snapshot left by a process that died inside a checkpoint is
	// removed at the next Open.
	require.Len(t, s.vl.PartitionSnapshotMustCreate(""), 1)
	require.NoError(t, s.Close())
	s = openTest(t, dir, eventstore.Options{}, Config{})
	require.Empty(t, s.vl.PartitionSnapshotList())
}

// crashChild runs test in a child process with VLSTORE_CRASH_DIR=dir and
// VLSTORE_CRASH_MODE=mode, and requires it to succeed.
func crashChild(t *testing.T, test, dir, mode string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "VLSTORE_CRASH_DIR="+dir, "VLSTORE_CRASH_MODE="+mode)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
}

// TestIdentityEviction: identities that fall out of the window leave the
// cache, and a redelivery of such an event is still a duplicate (found in
// the storage by the per-batch lookup).
func TestIdentityEviction(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{IdentityWindow: time.Hour})
	defer s.Close()
	now := time.Now()
	v := eventgen.Event("c1", "evict-1", 1000, now.Add(-30*time.Minute))
	res, err := s.Write(ctx, [][]byte{v})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	require.Equal(t, 1, s.ids.len())

	s.ids.evict(now.Add(time.Minute))
	require.Equal(t, 1, s.ids.len(), "not yet a tenth of a window since the last eviction")
	s.ids.evict(now.Add(2 * time.Hour))
	require.Zero(t, s.ids.len(), "out of the window")
	res, err = s.Write(ctx, [][]byte{v})
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 1}, res)
	require.Len(t, stored(t, s, "*"), 1)
}

// TestIdentityCacheBound: the cache holds at most IdentityMax copies, the
// newest by event time, also when loaded at Open; the events it forgot
// are still duplicates when redelivered (found in the storage).
func TestIdentityCacheBound(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{IdentityMax: 100, DeferSync: true}
	s := openTest(t, dir, eventstore.Options{}, cfg)
	now := time.Now().Truncate(time.Minute)
	// 300 events a second apart, the oldest ten minutes ago, in three
	// batches out of time order.
	var values [][]byte
	for i := range 300 {
		values = append(values, eventgen.Event("c1", fmt.Sprintf("bound-%03d", i), 500, now.Add(-10*time.Minute+time.Duration(i)*time.Second)))
	}
	for _, batch := range [][][]byte{values[200:], values[:100], values[100:200]} {
		res, err := s.Write(ctx, batch)
		require.NoError(t, err)
		require.Equal(t, 100, res.Inserted)
		require.NoError(t, s.Sync(ctx))
		require.LessOrEqual(t, s.ids.len(), 100)
	}
	res, err := s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 300}, res, "the forgotten ones are looked up")
	require.NoError(t, s.Sync(ctx))
	require.NoError(t, s.Close())

	s = openTest(t, dir, eventstore.Options{}, cfg)
	defer s.Close()
	n := s.ids.len()
	require.LessOrEqual(t, n, 100, "Open loads the newest minutes only")
	require.Positive(t, n)
	res, err = s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, eventstore.WriteResult{Duplicates: 300}, res)
	require.Len(t, stored(t, s, "*"), 300)
}

// TestIdentitiesEvictByCount: evict keeps the newest three quarters of max
// by event time, ties at the cut included in what goes, and a reused
// identity's further copies count.
func TestIdentitiesEvictByCount(t *testing.T) {
	now := time.Now()
	ids := newIdentities(time.Hour, 8, 0, now)
	for i := range 10 {
		ids.add(identity{"c", fmt.Sprint(i), "s"}, compared{cols: uint64(i), timeNs: int64(i / 2)})
	}
	ids.add(identity{"c", "9", "s"}, compared{cols: 99, timeNs: 4})
	require.Equal(t, 11, ids.len())
	ids.evict(now)
	// Times 0,0,1,1,2,2,3,3,4,4,4: keep 6 means cut at the 5th oldest
	// (time 2) and everything at or before it: 5 newer copies stay.
	require.Equal(t, 5, ids.len())
	require.Equal(t, int64(3), ids.from)
	dup, reused := ids.check(identity{"c", "9", "s"}, compared{cols: 99}, nil)
	require.True(t, dup)
	require.False(t, reused)
	dup, reused = ids.check(identity{"c", "9", "s"}, compared{cols: 7}, nil)
	require.False(t, dup)
	require.True(t, reused)
	dup, reused = ids.check(identity{"c", "1", "s"}, compared{cols: 1}, nil)
	require.False(t, dup || reused, "forgotten")
}

// TestWriteVictoriaLogsLimits: a key longer than VictoriaLogs' field-name
// limit is left out of the fields (kept in _msg) instead of losing the
// event; an event over its row-size limit is reported invalid, not lost
// silently.
func TestWriteVictoriaLogsLimits(t *testing.T) {
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{})
	defer s.Close()
	long := localtest.GKE(t)[0].ProcessedEvent
	long.AuditID = "long-key"
	longKey := "example.com/" + strings.Repeat("k", 150)
	long.Annotations = map[string]string{longKey: "v", "short": "s"}
	longJSON, err := json.Marshal(long)
	require.NoError(t, err)
	huge := eventgen.Event("c1", "huge", 3<<20, time.Now())
	res, err := s.Write(context.Background(), [][]byte{longJSON, huge})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	require.Equal(t, 1, res.Invalid)
	require.Equal(t, 1, res.InvalidValues[0].Index)
	require.Contains(t, res.InvalidValues[0].Reason, "refused by VictoriaLogs")
	got := stored(t, s, "*", "annotations.short")
	require.Len(t, got, 1)
	require.Equal(t, "s", got[0]["annotations.short"])
	require.Contains(t, got[0][eventKey], longKey)
}

// TestConcurrentWriters: Write calls from several goroutines (one per
// partition), overlapping in content, share checkpoints: every event is
// stored once, the counts add up, and a Write after Close fails instead
// of touching the closed storage.
func TestConcurrentWriters(t *testing.T) {
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{})
	ctx := context.Background()
	const writers, batches, size = 4, 10, 20
	now := time.Now()
	batch := func(w, b int) [][]byte {
		values := make([][]byte, size)
		for i := range values {
			// Writer w's batch b repeats the second half of writer w-1's.
			owner, k := w, i
			if i < size/2 && w > 0 {
				owner, k = w-1, i+size/2
			}
			values[i] = eventgen.Event("c1", fmt.Sprintf("w%d-b%d-%02d", owner, b, k), 1000, now.Add(time.Duration(owner*1000+b*100+k)*time.Millisecond))
		}
		return values
	}
	results := make([]eventstore.WriteResult, writers*batches)
	errs := make([]error, writers*batches)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				results[w*batches+b], errs[w*batches+b] = s.Write(ctx, batch(w, b))
			}
		}()
	}
	wg.Wait()
	var inserted, dups int
	for i, r := range results {
		require.NoError(t, errs[i])
		inserted += r.Inserted
		dups += r.Duplicates
	}
	unique := batches * (size + (writers-1)*size/2)
	require.Equal(t, unique, inserted)
	require.Equal(t, writers*batches*size-unique, dups)
	require.Len(t, stored(t, s, "*"), unique)

	require.NoError(t, s.Close())
	_, err := s.Write(ctx, batch(0, 0))
	require.ErrorContains(t, err, "store closed")
}

// TestWriteInParts: a batch large enough to be decoded and added in
// parallel parts (decodeAll, insert) gives the answer a one-part Write
// gives: invalid values named by their index in order, a duplicate of a
// value in another part found, a reused auditID across parts marked, and
// every event stored as written, each row naming its own.
func TestWriteInParts(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const n = 8 * minPart
	require.Equal(t, 4, splitCount(n), "the batch is split")
	var reusedHook [][]byte
	s := openTest(t, t.TempDir(), eventstore.Options{OnReused: func(_ context.Context, events [][]byte) {
		reusedHook = append(reusedHook, events...)
	}}, Config{DeferSync: true})
	defer s.Close()
	now := time.Now()
	values := make([][]byte, n)
	for i := range values {
		values[i] = eventgen.Event("c1", fmt.Sprintf("part-%03d", i), 1400, now.Add(time.Duration(i)*time.Millisecond))
	}
	// In the last part: a copy of an event of the first, and a different
	// event under the identity of another one of the first.
	values[n-1] = values[3]
	var pe map[string]any
	require.NoError(t, json.Unmarshal(values[5], &pe))
	pe["verb"] = "delete"
	pe[schemas.PipelineKey].(map[string]any)["contentHash"] = strings.Repeat("c", 64)
	other, err := json.Marshal(pe)
	require.NoError(t, err)
	values[n-2] = other
	// Invalid values in the second and third parts.
	invalidAt := []int{n/4 + 1, n/2 + 7}
	for _, i := range invalidAt {
		values[i] = []byte(`{"not":"an event"}`)
	}

	res, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, n-len(invalidAt)-1, res.Inserted)
	require.Equal(t, 1, res.Duplicates)
	require.Equal(t, 1, res.Reused)
	require.Len(t, res.InvalidValues, len(invalidAt))
	for i, iv := range res.InvalidValues {
		require.Equal(t, invalidAt[i], iv.Index)
	}
	require.Equal(t, [][]byte{other}, reusedHook)

	rows := stored(t, s, "*", "auditID")
	require.Len(t, rows, res.Inserted)
	byEvent := map[string]bool{}
	for _, r := range rows {
		byEvent[r[eventKey]] = true
	}
	require.Len(t, byEvent, len(rows), "each row names its own event")
	for i, v := range values {
		if slices.Contains(invalidAt, i) || i == n-1 || i == n-2 {
			continue
		}
		require.True(t, byEvent[string(v)], "value %d stored as written", i)
	}
	marked := stored(t, s, `"auditpipe.auditIDReused":=true`, "verb")
	require.Len(t, marked, 1)
	require.Equal(t, "delete", marked[0]["verb"])
}
