package vlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/cespare/xxhash/v2"
)

// identity is what an event's stored copies share (decision 0012).
type identity struct{ cluster, auditID, stage string }

// compared tells two events of one identity apart: the content hash, and
// for events without one (before 0012) a fingerprint of the fields the
// pipeline never changes after the apiserver wrote them (what the SQLite
// store compares column by column). No pointers: the identity cache holds
// one per stored event, and a pointer-free map costs the garbage collector
// nothing to scan.
type compared struct {
	hash uint64 // xxhash of the content hash; 0: none (a hash of 0 is stored as 1)
	cols uint64
	// timeNs is the event's _time: what the cache evicts by (not
	// compared).
	timeNs int64
}

// setHash records the event's content hash (its auditpipe.contentHash).
func (c *compared) setHash(contentHash string) {
	if contentHash != "" {
		c.hash = max(xxhash.Sum64String(contentHash), 1)
	}
}

// sameEvent is the SQLite store's rule: both hashes known decide;
// otherwise the fields do (the level is not among them: a replay through
// another policy may lower it).
func sameEvent(a, b compared) bool {
	if a.hash != 0 && b.hash != 0 {
		return a.hash == b.hash
	}
	return a.cols == b.cols
}

// comparedKeys are the flattened keys of the fingerprint, in its order.
// Differences from the SQLite store's columns: sourceIPs is the whole
// list (SQLite keeps the first address) and the times are compared as
// milliseconds, as there.
var comparedKeys = [...]string{
	"verb", "user.username", "user.groups", "objectRef.resource", "objectRef.subresource",
	"objectRef.namespace", "objectRef.name", "objectRef.apiGroup", "responseStatus.code",
	"sourceIPs", "userAgent", "requestReceivedTimestamp", keyStageTS,
}

var comparedIndex = func() map[string]int {
	m := make(map[string]int, len(comparedKeys))
	for i, k := range comparedKeys {
		m[k] = i
	}
	return m
}()

// fingerprint hashes the values of comparedKeys (in that order; times as
// unix milliseconds so that their spelling does not count).
func fingerprint(cols []string) uint64 {
	d := xxhash.New()
	for i, v := range cols {
		if k := comparedKeys[i]; (k == keyStageTS || k == "requestReceivedTimestamp") && v != "" {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				v = strconv.FormatInt(t.UnixMilli(), 10)
			}
		}
		_, _ = d.WriteString(v)
		_, _ = d.Write([]byte{0})
	}
	return d.Sum64()
}

// idKey is the identity cache's key: a 64-bit hash of the identity. Two
// identities sharing one (about one pair in 10^7 among a million cached
// identities) make the later event look like a reused auditID (stored,
// marked); it is taken for a duplicate only if its content hash (or field
// fingerprint) collides too.
type idKey uint64

func (id identity) key() idKey {
	d := xxhash.New()
	_, _ = d.WriteString(id.cluster)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(id.auditID)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(id.stage)
	return idKey(d.Sum64())
}

// identities is the writer's memory of what is stored: every identity
// stored with an event time at or after from (the window loaded at Open,
// and everything written since). Events older than from are looked up in
// the storage per batch (lookupOld). evict moves from forward and forgets
// what falls behind it, by age (the window) and by count (max: at most
// that many cached copies, the oldest by event time forgotten first), so
// the cache's memory is bounded at any event rate: 32 bytes per copy in
// a pointer-free map, ~65–100 bytes with the map's free slots.
type identities struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	from   int64 // unix ns
	// evicted is when evict last dropped by age.
	evicted time.Time
	// first holds an identity's first cached copy; more the others (a
	// reused auditID: rare), so that the common case is one flat entry.
	first map[idKey]compared
	more  map[idKey][]compared
}

// oldCopies are the stored copies lookupOld found for one batch.
type oldCopies map[idKey][]compared

func newIdentities(window time.Duration, max int, from int64, now time.Time) *identities {
	return &identities{window: window, max: max, from: from, evicted: now,
		first: map[idKey]compared{}, more: map[idKey][]compared{}}
}

// len is the number of cached copies.
func (ids *identities) len() int {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return ids.lenLocked()
}

func (ids *identities) lenLocked() int {
	n := len(ids.first)
	for _, cs := range ids.more {
		n += len(cs)
	}
	return n
}

// checkLocked reports whether an event of identity key k with cmp is
// stored (dup), or whether a different event of the same identity is
// (reused); old is what lookupOld found for the batch (may be nil).
func (ids *identities) checkLocked(k idKey, cmp compared, old oldCopies) (dup, reused bool) {
	first, seen := ids.first[k]
	if seen && sameEvent(first, cmp) {
		return true, false
	}
	for _, cs := range [...][]compared{ids.more[k], old[k]} {
		for _, c := range cs {
			if sameEvent(c, cmp) {
				return true, false
			}
			seen = true
		}
	}
	return false, seen
}

// admit checks every row (checkLocked) and records the new ones, in
// one critical section: of two concurrent batches holding the same event,
// exactly one stores it. It returns each row's verdict.
func (ids *identities) admit(rows []row, old oldCopies) []verdict {
	out := make([]verdict, len(rows))
	ids.mu.Lock()
	defer ids.mu.Unlock()
	for i := range rows {
		k := rows[i].id.key()
		out[i].dup, out[i].reused = ids.checkLocked(k, rows[i].cmp, old)
		if !out[i].dup {
			ids.addLocked(k, rows[i].cmp)
		}
	}
	return out
}

// verdict is admit's answer for one row.
type verdict struct{ dup, reused bool }

// add records a stored event (loading the cache: see admit for Writes).
func (ids *identities) add(id identity, cmp compared) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.addLocked(id.key(), cmp)
}

// addLocked records a stored event.
func (ids *identities) addLocked(k idKey, cmp compared) {
	if _, ok := ids.first[k]; !ok {
		ids.first[k] = cmp
		return
	}
	ids.more[k] = append(ids.more[k], cmp)
}

// forget takes back one add of (id, cmp): an event that was not stored
// after all.
func (ids *identities) forget(id identity, cmp compared) {
	k := id.key()
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if cs := ids.more[k]; len(cs) > 0 {
		if i := slices.Index(cs, cmp); i >= 0 {
			cs = slices.Delete(cs, i, i+1)
			if len(cs) == 0 {
				delete(ids.more, k)
			} else {
				ids.more[k] = cs
			}
			return
		}
	}
	if c, ok := ids.first[k]; ok && c == cmp {
		delete(ids.first, k)
		if cs := ids.more[k]; len(cs) > 0 {
			ids.first[k] = cs[0]
			if len(cs) == 1 {
				delete(ids.more, k)
			} else {
				ids.more[k] = cs[1:]
			}
		}
	}
}

// lookupOld returns the stored events sharing an identity with
// the rows older than the window, by one query over those rows' time
// range (auditID:in(...)). A reused auditID whose other copy lies outside
// that range is not seen (decision 0026 accepts this for replays).
func (ids *identities) lookupOld(ctx context.Context, vl *logstorage.Storage, rows []row) (oldCopies, error) {
	ids.mu.Lock()
	from := ids.from
	ids.mu.Unlock()
	var auditIDs []string
	lo, hi := int64(0), int64(0)
	for i := range rows {
		r := &rows[i]
		if r.timeNs >= from {
			continue
		}
		if len(auditIDs) == 0 || r.timeNs < lo {
			lo = r.timeNs
		}
		if len(auditIDs) == 0 || r.timeNs > hi {
			hi = r.timeNs
		}
		auditIDs = append(auditIDs, r.auditIDQuoted())
	}
	if len(auditIDs) == 0 {
		return nil, nil
	}
	slices.Sort(auditIDs)
	auditIDs = slices.Compact(auditIDs)
	q := fmt.Sprintf("_time:[%s, %s] auditID:in(%s)", timeLiteral(lo-int64(time.Second)), timeLiteral(hi+int64(time.Second)), strings.Join(auditIDs, ","))
	old := oldCopies{}
	if err := scanIdentities(ctx, vl, q, func(id identity, c compared) {
		k := id.key()
		old[k] = append(old[k], c)
	}); err != nil {
		return nil, err
	}
	return old, nil
}

// evict forgets the identities older than the window at now (at most
// every tenth of a window: it scans the whole cache) and, when the cache
// holds more than max copies, the oldest by event time down to three
// quarters of max. What it forgets is in the storage (searchable: it runs
// after a checkpoint, with the writers held off), so lookupOld finds it
// there from then on.
func (ids *identities) evict(now time.Time) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if now.Sub(ids.evicted) >= ids.window/10 {
		ids.evicted = now
		ids.dropBefore(now.Add(-ids.window).UnixNano())
	}
	if n := ids.lenLocked(); n > ids.max {
		times := make([]int64, 0, n)
		for _, c := range ids.first {
			times = append(times, c.timeNs)
		}
		for _, cs := range ids.more {
			for _, c := range cs {
				times = append(times, c.timeNs)
			}
		}
		slices.Sort(times)
		// Everything at or before this time goes: at least n - keep
		// copies, more where times tie.
		ids.dropBefore(times[n-ids.max*3/4-1] + 1)
	}
}

// dropBefore forgets the copies with an event time before cutoff and
// moves from to it if that is later (ids.mu held). The cache may hold
// copies older than from: events older than the window stored since
// (kept so that a batch holding one twice stores it once).
func (ids *identities) dropBefore(cutoff int64) {
	ids.dropCopies(func(c compared) bool { return c.timeNs < cutoff })
	ids.from = max(ids.from, cutoff)
}

// dropCopies forgets the copies drop says (ids.mu held).
func (ids *identities) dropCopies(drop func(compared) bool) {
	for k, c := range ids.first {
		if drop(c) {
			delete(ids.first, k)
		}
	}
	for k, cs := range ids.more {
		cs = slices.DeleteFunc(cs, drop)
		if _, ok := ids.first[k]; !ok && len(cs) > 0 {
			ids.first[k], cs = cs[0], cs[1:]
		}
		if len(cs) == 0 {
			delete(ids.more, k)
		} else {
			ids.more[k] = cs
		}
	}
}

func (r *row) auditIDQuoted() string { return strconv.Quote(r.id.auditID) }

func timeLiteral(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// loadIdentities reads the identities of the events stored with a time at
// or after now-window, or of the newest max of them by minute when there
// are more (a count of the events per minute, reading only _time, finds
// that minute first: a busy fleet's day is far more than the cache holds,
// and reading it all would make Open slow).
func loadIdentities(ctx context.Context, vl *logstorage.Storage, now time.Time, window time.Duration, max int) (*identities, error) {
	from := now.Add(-window).UnixNano()
	start, err := newestStart(ctx, vl, from, max)
	if err != nil {
		return nil, err
	}
	ids := newIdentities(window, max, start, now)
	q := fmt.Sprintf("_time:>=%s", timeLiteral(start))
	err = scanIdentities(ctx, vl, q, ids.add)
	if err != nil {
		return nil, err
	}
	ids.evict(now) // events of the starting minute's ties may exceed max
	return ids, nil
}

// newestStart is the latest minute boundary at or after from such that
// the events from it on are at most max (from itself when they all are).
func newestStart(ctx context.Context, vl *logstorage.Storage, from int64, max int) (int64, error) {
	q := fmt.Sprintf("_time:>=%s | stats by (_time:1m) count() n", timeLiteral(from))
	type bucket struct {
		start int64
		n     int
	}
	var buckets []bucket
	total := 0
	var mu sync.Mutex
	err := runRows(ctx, vl, q, func(db *logstorage.DataBlock) error {
		times, counts := db.GetColumnByName("_time"), db.GetColumnByName("n")
		if times == nil || counts == nil {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range db.RowsCount() {
			t, err := time.Parse(time.RFC3339Nano, times.Values[i])
			if err != nil {
				return fmt.Errorf("minute %q: %w", times.Values[i], err)
			}
			n, err := strconv.Atoi(counts.Values[i])
			if err != nil {
				return fmt.Errorf("count %q: %w", counts.Values[i], err)
			}
			buckets = append(buckets, bucket{t.UnixNano(), n})
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count the recent events per minute: %w", err)
	}
	if total <= max {
		return from, nil
	}
	slices.SortFunc(buckets, func(a, b bucket) int { return cmp.Compare(b.start, a.start) }) // newest first
	kept := 0
	for i, b := range buckets {
		if kept+b.n > max {
			if i == 0 {
				return b.start, nil // one minute over max: evict trims it
			}
			return buckets[i-1].start, nil
		}
		kept += b.n
	}
	return from, nil
}

// runRows runs the LogsQL query and calls f for each result block; the
// first error f returns is the query's.
func runRows(ctx context.Context, vl *logstorage.Storage, query string, f func(*logstorage.DataBlock) error) error {
	q, err := logstorage.ParseQuery(query)
	if err != nil {
		return fmt.Errorf("parse %q: %w", query, err)
	}
	var mu sync.Mutex
	var ferr error
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	if err := vl.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		if err := f(db); err != nil {
			mu.Lock()
			ferr = cmp.Or(ferr, err)
			mu.Unlock()
		}
	}); err != nil {
		return fmt.Errorf("run %q: %w", query, err)
	}
	return ferr
}

// scanIdentities runs the LogsQL filter and calls add (serialized) for
// every matching event's identity. The identity's strings are the query's
// and valid during the call only.
func scanIdentities(ctx context.Context, vl *logstorage.Storage, filter string, add func(identity, compared)) error {
	names := append([]string{keyCluster, "auditID", "stage", keyContentHash}, comparedKeys[:]...)
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	var mu sync.Mutex
	return runRows(ctx, vl, filter+" | fields _time, "+strings.Join(quoted, ", "), func(db *logstorage.DataBlock) error {
		col := func(name string) []string {
			if c := db.GetColumnByName(name); c != nil {
				return c.Values
			}
			return nil
		}
		value := func(vals []string, i int) string {
			if vals == nil {
				return ""
			}
			return vals[i]
		}
		cluster, auditID, stage, hash, times := col(keyCluster), col("auditID"), col("stage"), col(keyContentHash), col("_time")
		colVals := make([][]string, len(comparedKeys))
		for i, k := range comparedKeys {
			colVals[i] = col(k)
		}
		cols := make([]string, len(comparedKeys))
		mu.Lock()
		defer mu.Unlock()
		for i := range db.RowsCount() {
			for j := range cols {
				cols[j] = value(colVals[j], i)
			}
			var ts int64
			if times != nil {
				if t, err := time.Parse(time.RFC3339Nano, times[i]); err == nil {
					ts = t.UnixNano()
				}
			}
			c := compared{cols: fingerprint(cols), timeNs: ts}
			c.setHash(value(hash, i))
			add(identity{value(cluster, i), value(auditID, i), value(stage, i)}, c)
		}
		return nil
	})
}
