package vlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/VictoriaMetrics/VictoriaMetrics/lib/fs"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// Values of the reason label of auditpipe_localstore_pruned_events_total.
const (
	pruneAge  = "age"
	pruneSize = "size"
)

const (
	// partitionsDir is where lib/logstorage keeps its per-day partitions
	// (its unexported partitionsDirname), one directory YYYYMMDD each.
	partitionsDir = "partitions"
	partitionName = "20060102"
	oneDay        = 24 * time.Hour
	// sizeHeadroom: retention by size, once over MaxBytes, deletes down
	// to MaxBytes less 1/sizeHeadroom of it (in whole days: sizeCutoff).
	sizeHeadroom = 20
	// deletePoll is how often pruneBefore asks whether its delete task is
	// done (the storage's watcher starts pending tasks about every second).
	deletePoll = 20 * time.Millisecond
	// liveRows matches the stored events and not what a delete task
	// leaves of a deleted row that was the first of its block: a row with
	// its timestamp and no fields (lib/logstorage's rows.go keeps it so
	// that blocks stay ordered; VictoriaLogs issue #825), which `*` and
	// `_time:` filters still match. Every stored event has a stage (Write
	// refuses events without one).
	liveRows = "stage:*"
	// timed matches the events with a stageTimestamp (their _time is
	// it); the others' _time is receivedAt or the write time.
	timed = `"` + keyStageTS + `":*`
)

// RunRetention prunes in steps until ctx ends (eventstore.RunRetention),
// measuring the used bytes every round.
func (s *Store) RunRetention(ctx context.Context, r eventstore.Retention) {
	eventstore.RunRetention(ctx, s, r, s.logger)
}

// PruneStep deletes, at time now, the events older than r.MaxAge (the
// bound rounded down to Config.AgeGranularity; events without a
// stageTimestamp stay), else, when the store is over r.MaxBytes, the
// oldest days (by _time, receivedAt for those without a stageTimestamp)
// down to 95 % of it, never the newest (sizeCutoff). One step does all of
// either: the storage drops whole days or runs one delete task, not row
// by row, so r.StepRows does not apply. more reports whether another step
// may find work. The deleted count is counted, not estimated: the
// matching events before minus after, with the writers held off.
func (s *Store) PruneStep(ctx context.Context, r eventstore.Retention, now time.Time) (deleted int, more bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false, errors.New("vlstore: prune: store closed")
	}
	if r.MaxAge > 0 {
		cutoff := now.Add(-r.MaxAge).Truncate(s.cfg.AgeGranularity)
		n, err := s.pruneBefore(ctx, cutoff.UnixNano(), true)
		s.metrics.pruned.WithLabelValues(pruneAge).Add(float64(n))
		if err != nil {
			return n, false, fmt.Errorf("vlstore: prune by age: %w", err)
		}
		if n > 0 {
			return n, r.MaxBytes > 0, nil
		}
	}
	if r.MaxBytes > 0 {
		used := s.usedBytes()
		if used <= r.MaxBytes {
			return 0, false, nil
		}
		cutoff, err := s.sizeCutoff(ctx, used, used-(r.MaxBytes-r.MaxBytes/sizeHeadroom))
		if err != nil {
			return 0, false, fmt.Errorf("vlstore: prune by size: %w", err)
		}
		if cutoff == 0 {
			s.logger.Warn("vlstore: over local.maxBytes with one day of events: retention by size frees whole days, the oldest first, never the newest",
				"usedBytes", used, "maxBytes", r.MaxBytes)
			return 0, false, nil
		}
		n, err := s.pruneBefore(ctx, cutoff, false)
		s.metrics.pruned.WithLabelValues(pruneSize).Add(float64(n))
		if err != nil {
			return n, false, fmt.Errorf("vlstore: prune by size: %w", err)
		}
		return n, n > 0, nil
	}
	return 0, false, nil
}

// UsedBytes is the compressed size of the stored data and its indexes, as
// the storage reports it (in-memory parts included), plus the event files:
// what r.MaxBytes bounds. It also sets auditpipe_localstore_used_bytes.
func (s *Store) UsedBytes(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("vlstore: used bytes: store closed")
	}
	return s.usedBytes(), nil
}

// usedBytes: see UsedBytes. Called with s.mu held.
func (s *Store) usedBytes() int64 {
	var st logstorage.StorageStats
	s.vl.UpdateStats(&st)
	p := st.PartitionStats
	used := int64(p.CompressedInmemorySize+p.CompressedSmallPartSize+p.CompressedBigPartSize+p.IndexdbSizeBytes) + s.docs.bytes()
	s.metrics.usedBytes.Set(float64(used))
	return used
}

// pruneBefore deletes the events with _time before cutoff (unix ns), by
// age only those with a stageTimestamp (eventstore.Retention: events
// without one never expire by age; their _time is receivedAt), and
// returns how many went. Writers wait meanwhile (s.mu, held by
// PruneStep), so that the count before and after is exact and no batch
// checks identities being forgotten. Whole days before cutoff are
// detached and removed (what the storage's own retention does), by age
// only days without an event lacking a stageTimestamp; the rest by a
// delete task (rowDelete). Called with s.mu held.
func (s *Store) pruneBefore(ctx context.Context, cutoff int64, byAge bool) (int, error) {
	filter := "_time:<" + timeLiteral(cutoff)
	if byAge {
		filter += " " + timed
	}
	before, err := s.countEvents(ctx, filter)
	if err != nil || before == 0 {
		return 0, err
	}
	// From the first partition dropped on, the counts are taken even if
	// ctx ends: what went must be counted.
	counted := context.WithoutCancel(ctx)
	dropped := false
	for _, name := range s.vl.PartitionList() {
		start, err := time.Parse(partitionName, name)
		if err != nil || start.Add(oneDay).UnixNano() > cutoff {
			continue
		}
		if byAge {
			untimed, err := s.countEvents(counted, fmt.Sprintf("_time:[%s, %s) -%s", timeLiteral(start.UnixNano()), timeLiteral(start.Add(oneDay).UnixNano()), timed))
			if err != nil {
				return 0, err
			}
			if untimed > 0 {
				continue // its timed events go by rowDelete below
			}
		}
		if err := s.vl.PartitionDetach(name); err != nil {
			return 0, fmt.Errorf("detach partition %s: %w", name, err)
		}
		// MustRemoveDir marks the directory first, so that a partition
		// removed halfway by a crash is dropped by the next Open
		// instead of being opened broken.
		fs.MustRemoveDir(filepath.Join(s.path, partitionsDir, name))
		// Its events' file after it: a crash in between leaves a file
		// without a partition, which Open removes.
		if err := s.docs.drop(name); err != nil {
			return 0, err
		}
		dropped = true
	}
	left := before
	if dropped {
		if left, err = s.countEvents(counted, filter); err != nil {
			return 0, err
		}
	}
	var waitErr error
	if left > 0 {
		waitErr = s.rowDelete(ctx, filter)
	}
	after, err := s.countEvents(counted, filter)
	if err != nil {
		return 0, errors.Join(waitErr, err)
	}
	if err := s.forgetPruned(counted, cutoff, waitErr == nil); err != nil {
		return before - after, errors.Join(waitErr, err)
	}
	return before - after, waitErr
}

// forgetPruned drops the identities of events with _time before cutoff
// from the cache: they were pruned, and a redelivery of one must be
// stored again, as in the SQLite store (where its row is gone). Older
// identities than the cache's window are looked up in the storage, which
// no longer has them. Those of the events that stayed (no
// stageTimestamp, by age) are read back when the delete is done; not when
// it goes on in the background (done false): a redelivery of one of
// those is then stored twice.
func (s *Store) forgetPruned(ctx context.Context, cutoff int64, done bool) error {
	ids := s.ids
	ids.mu.Lock()
	ids.dropCopies(func(c compared) bool { return c.timeNs < cutoff })
	from := ids.from
	ids.mu.Unlock()
	if !done || cutoff <= from {
		return nil
	}
	q := fmt.Sprintf("_time:[%s, %s) %s", timeLiteral(from), timeLiteral(cutoff), liveRows)
	if err := scanIdentities(ctx, s.vl, q, ids.add); err != nil {
		return fmt.Errorf("reload the identities of the events kept: %w", err)
	}
	return nil
}

// rowDelete deletes the events matching filter by a VictoriaLogs delete
// task and waits until the storage has run it. The task rewrites every
// part holding a matching row without those rows (a merge), so its cost
// is the size of those parts, not of the rows deleted. Tasks are kept in
// the storage's directory: one that ctx interrupts goes on in the
// background, and after a restart.
func (s *Store) rowDelete(ctx context.Context, filter string) error {
	f, err := logstorage.ParseFilter(filter)
	if err != nil {
		return fmt.Errorf("parse delete filter %q: %w", filter, err)
	}
	id := "auditpipe-retention-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := s.vl.DeleteRunTask(ctx, id, time.Now().UnixNano(), []logstorage.TenantID{{}}, f); err != nil {
		return fmt.Errorf("start delete task %q: %w", filter, err)
	}
	tick := time.NewTicker(deletePoll)
	defer tick.Stop()
	for {
		tasks, err := s.vl.DeleteActiveTasks(ctx)
		if err != nil {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
		if !slices.ContainsFunc(tasks, func(t *logstorage.DeleteTask) bool { return t.TaskID == id }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for delete task %s (%s; it goes on in the background): %w", id, filter, ctx.Err())
		case <-tick.C:
		}
	}
}

// sizeCutoff is the time before which the oldest events make up at least
// excess of the used bytes, at a day boundary: the rows to delete are
// estimated from the average row size (used over the row count), and
// whole days are taken, oldest first, until they cover it. Only whole
// days free space: a day's events stay in its event file (docs.go) until
// the day is dropped, so deleting some rows of a day would shrink little
// and, round after round, delete the whole day anyway. The newest day is
// never taken: 0 when the days before it do not cover the excess (the
// caller says why). Another step deletes more if the estimate was short.
func (s *Store) sizeCutoff(ctx context.Context, used, excess int64) (int64, error) {
	days, err := s.eventsPerDay(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, d := range days {
		total += d.n
	}
	if total == 0 {
		return 0, nil
	}
	need := int((excess*int64(total) + used - 1) / used)
	cum, cutoff := 0, int64(0)
	for _, d := range days[:max(len(days)-1, 0)] {
		cum += d.n
		cutoff = d.start + int64(oneDay)
		if cum >= need {
			break
		}
	}
	return cutoff, nil
}

// bucket is one time bucket of a `stats by (_time:step) count()` query.
type bucket struct {
	start int64 // unix ns
	n     int
}

// eventsPerDay counts the stored events (liveRows) per UTC day, oldest
// first, days without events left out.
func (s *Store) eventsPerDay(ctx context.Context) ([]bucket, error) {
	var out []bucket
	var parseErr error
	err := s.statsRows(ctx, "* "+liveRows+" | stats by (_time:1d) count() as n", func(cols map[string]string) {
		t, err := time.Parse(time.RFC3339Nano, cols["_time"])
		n, err2 := strconv.Atoi(cols["n"])
		if err := errors.Join(err, err2); err != nil {
			parseErr = errors.Join(parseErr, fmt.Errorf("bucket %v: %w", cols, err))
			return
		}
		out = append(out, bucket{start: t.UnixNano(), n: n})
	})
	if err := errors.Join(err, parseErr); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmp.Compare(a.start, b.start) })
	return out, nil
}

// countEvents is how many stored events match the LogsQL filter (liveRows).
func (s *Store) countEvents(ctx context.Context, filter string) (int, error) {
	n := 0
	var parseErr error
	err := s.statsRows(ctx, filter+" "+liveRows+" | stats count() as n", func(cols map[string]string) {
		v, err := strconv.Atoi(cols["n"])
		if err != nil {
			parseErr = fmt.Errorf("count %q: %w", filter, err)
		}
		n += v
	})
	return n, errors.Join(err, parseErr)
}

// statsRows runs a LogsQL query and calls row (serialized) with each
// result row's columns, their values owned.
func (s *Store) statsRows(ctx context.Context, query string, row func(cols map[string]string)) error {
	q, err := logstorage.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("parse %q: %w", query, err)
	}
	var mu sync.Mutex
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	s.visible()
	err = s.vl.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		mu.Lock()
		defer mu.Unlock()
		cols := db.GetColumns(false)
		for i := range db.RowsCount() {
			m := make(map[string]string, len(cols))
			for _, c := range cols {
				m[c.Name] = strings.Clone(c.Values[i])
			}
			row(m)
		}
	})
	if err != nil {
		return fmt.Errorf("run %q: %w", query, err)
	}
	return nil
}
