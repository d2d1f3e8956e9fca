package local

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
)

// Group commit (write.go, decision 0025): concurrent Write calls share a
// transaction. These tests hold the writer themselves so that the calls
// under test queue up and are committed together, deterministically.

func openGroupStore(t *testing.T) (*Store, string, *prometheus.Registry) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	reg := prometheus.NewRegistry()
	s, err := Open(path, Options{Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, path, reg
}

// holdWriter takes the writer as a committing Write call would; the
// returned func gives it back.
func holdWriter(s *Store) (release func()) {
	s.writing <- struct{}{}
	return func() { <-s.writing }
}

// waitQueued waits until n requests are queued.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.queueMu.Lock()
		defer s.queueMu.Unlock()
		return len(s.queue) == n
	}, 10*time.Second, time.Millisecond, "want %d queued writes", n)
}

type writeReturn struct {
	res WriteResult
	err error
}

// queueWrite starts a Write of values and waits until it is the n-th
// queued request, so that the queue order is the start order.
func queueWrite(t *testing.T, s *Store, n int, values [][]byte) <-chan writeReturn {
	t.Helper()
	out := make(chan writeReturn, 1)
	go func() {
		res, err := s.Write(context.Background(), values)
		out <- writeReturn{res, err}
	}()
	waitQueued(t, s, n)
	return out
}

func events(cluster string, ids ...string) [][]byte {
	ts := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = eventgen.Event(cluster, id, 1400, ts)
	}
	return out
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%03d", prefix, i))
	}
	return out
}

func stored(t *testing.T, s *Store, cluster string) int {
	t.Helper()
	res, err := s.Query(context.Background(), Query{Cluster: cluster, Limit: 1})
	require.NoError(t, err)
	return res.Total
}

// histogram returns the sample count and sum of a store histogram.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

func TestGroupCommitGivesEachCallItsOwnCounts(t *testing.T) {
	s, _, reg := openGroupStore(t)
	release := holdWriter(s)
	// b repeats half of a: in one transaction, a (queued first) inserts
	// them and b counts them as duplicates. c has an invalid value.
	a := queueWrite(t, s, 1, events("c1", ids("ev", 0, 10)...))
	b := queueWrite(t, s, 2, events("c1", ids("ev", 5, 15)...))
	c := queueWrite(t, s, 3, append(events("c1", ids("other", 0, 5)...), []byte(`{"auditID":`)))
	release()

	ra, rb, rc := <-a, <-b, <-c
	require.NoError(t, ra.err)
	require.NoError(t, rb.err)
	require.NoError(t, rc.err)
	require.Equal(t, WriteResult{Inserted: 10}, ra.res)
	require.Equal(t, WriteResult{Inserted: 5, Duplicates: 5}, rb.res)
	require.Equal(t, 5, rc.res.Inserted)
	require.Equal(t, 1, rc.res.Invalid)
	require.Equal(t, 5, rc.res.InvalidValues[0].Index)
	require.Equal(t, 20, stored(t, s, "c1"))

	// One transaction held the three calls and their 25 valid events.
	n, calls := histogram(t, reg, "auditpipe_localstore_transaction_writes")
	require.Equal(t, uint64(1), n)
	require.Equal(t, 3.0, calls)
	_, evs := histogram(t, reg, "auditpipe_localstore_transaction_events")
	require.Equal(t, 25.0, evs)
}

func TestGroupCommitErrorFailsEveryBatchOfTheTransaction(t *testing.T) {
	s, path, _ := openGroupStore(t)
	// Another connection makes one event fail inside the transaction, as
	// a full disk or an I/O error would.
	db, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.audit_id = 'poison'
		BEGIN SELECT RAISE(ABORT, 'poisoned'); END`)
	require.NoError(t, err)

	release := holdWriter(s)
	a := queueWrite(t, s, 1, events("c1", ids("a", 0, 10)...))
	b := queueWrite(t, s, 2, events("c1", append(ids("b", 0, 10), "poison")...))
	c := queueWrite(t, s, 3, events("c1", ids("c", 0, 10)...))
	release()
	for _, ch := range []<-chan writeReturn{a, b, c} {
		r := <-ch
		require.ErrorContains(t, r.err, "poisoned")
		require.Equal(t, WriteResult{}, r.res)
	}
	// Nothing is half-written: a's rows, inserted before b's failed, were
	// rolled back with them.
	require.Equal(t, 0, stored(t, s, "c1"))

	// Each caller retries its own batch.
	_, err = db.Exec(`DROP TRIGGER poison`)
	require.NoError(t, err)
	for _, v := range [][][]byte{events("c1", ids("a", 0, 10)...), events("c1", ids("c", 0, 10)...)} {
		res, err := s.Write(context.Background(), v)
		require.NoError(t, err)
		require.Equal(t, WriteResult{Inserted: 10}, res)
	}
	require.Equal(t, 20, stored(t, s, "c1"))
}

func TestGroupCommitWithdrawsACancelledWrite(t *testing.T) {
	s, _, _ := openGroupStore(t)
	release := holdWriter(s)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan error, 1)
	go func() {
		_, err := s.Write(ctx, events("c1", ids("a", 0, 3)...))
		out <- err
	}()
	waitQueued(t, s, 1)
	cancel()
	require.ErrorIs(t, <-out, context.Canceled)
	waitQueued(t, s, 0)
	release()
	require.Equal(t, 0, stored(t, s, "c1"))
}

// Concurrent writers with overlapping batches, as partitions redelivered
// after a rebalance: every event is stored once, and the per-call counts
// add up.
func TestGroupCommitConcurrentWriters(t *testing.T) {
	s, _, reg := openGroupStore(t)
	const writers, batches, size = 6, 8, 40
	var mu sync.Mutex
	var total WriteResult
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				// Writer w's batch b overlaps its batch b+1 and writer
				// w+1's batch b by half.
				from := (w + b) * size / 2
				res, err := s.Write(context.Background(), events("c1", ids("ev", from, from+size)...))
				if err != nil {
					t.Error(err)
					return
				}
				if res.Inserted+res.Duplicates != size {
					t.Errorf("writer %d batch %d: %+v", w, b, res)
				}
				mu.Lock()
				total.Inserted += res.Inserted
				total.Duplicates += res.Duplicates
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	unique := map[string]bool{}
	for w := range writers {
		for b := range batches {
			from := (w + b) * size / 2
			for _, id := range ids("ev", from, from+size) {
				unique[id] = true
			}
		}
	}
	require.Equal(t, len(unique), total.Inserted)
	require.Equal(t, writers*batches*size-len(unique), total.Duplicates)
	require.Equal(t, len(unique), stored(t, s, "c1"))
	n, calls := histogram(t, reg, "auditpipe_localstore_transaction_writes")
	require.Equal(t, float64(writers*batches), calls)
	t.Logf("%d writes in %d transactions", writers*batches, n)
}
