package vlstore

import (
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
// store compares column by column).
type compared struct {
	hash string
	cols uint64
	// timeNs is the event's _time: what the cache evicts by (not
	// compared).
	timeNs int64
}

// sameEvent is the SQLite store's rule: both hashes known decide;
// otherwise the fields do (the level is not among them: a replay through
// another policy may lower it).
func sameEvent(a, b compared) bool {
	if a.hash != "" && b.hash != "" {
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

// identities is the writer's memory of what is stored: every identity
// stored with an event time at or after from (the window loaded at Open,
// and everything written since). Events older than from are looked up in
// the storage per batch (lookupOld). evict moves from forward and forgets
// what falls behind it, so the cache holds about one window of events.
type identities struct {
	mu     sync.Mutex
	window time.Duration
	from   int64 // unix ns
	// evicted is when evict last ran.
	evicted time.Time
	m       map[identity][]compared
	// old holds what lookupOld found for the current batch.
	old map[identity][]compared
}

func (ids *identities) len() int {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return len(ids.m)
}

// check reports whether an event of identity id with cmp is stored
// (dup), or whether a different event of the same identity is (reused).
func (ids *identities) check(id identity, cmp compared) (dup, reused bool) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	same := ids.m[id]
	if o := ids.old[id]; len(o) > 0 {
		same = append(slices.Clip(same), o...)
	}
	if slices.ContainsFunc(same, func(c compared) bool { return sameEvent(c, cmp) }) {
		return true, false
	}
	return false, len(same) > 0
}

// add records a stored event. Its strings are cloned: they borrow from
// the event's JSON, which the cache must not keep alive.
func (ids *identities) add(id identity, cmp compared) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	id = identity{strings.Clone(id.cluster), strings.Clone(id.auditID), strings.Clone(id.stage)}
	cmp.hash = strings.Clone(cmp.hash)
	ids.m[id] = append(ids.m[id], cmp)
}

// lookupOld loads into ids.old the stored events sharing an identity with
// the rows older than the window, by one query over those rows' time
// range (auditID:in(...)). A reused auditID whose other copy lies outside
// that range is not seen (decision 0026 accepts this for replays).
func (ids *identities) lookupOld(ctx context.Context, vl *logstorage.Storage, rows []row) error {
	ids.mu.Lock()
	from := ids.from
	ids.old = nil
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
		return nil
	}
	slices.Sort(auditIDs)
	auditIDs = slices.Compact(auditIDs)
	q := fmt.Sprintf("_time:[%s, %s] auditID:in(%s)", timeLiteral(lo-int64(time.Second)), timeLiteral(hi+int64(time.Second)), strings.Join(auditIDs, ","))
	old := map[identity][]compared{}
	if err := scanIdentities(ctx, vl, q, func(id identity, c compared) { old[id] = append(old[id], c) }); err != nil {
		return err
	}
	ids.mu.Lock()
	ids.old = old
	ids.mu.Unlock()
	return nil
}

// evict forgets the identities older than the window at now, at most
// every tenth of a window (it scans the whole map). Everything it forgets
// was checkpointed (Write checkpoints before returning), so lookupOld
// finds it in the storage from then on.
func (ids *identities) evict(now time.Time) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if now.Sub(ids.evicted) < ids.window/10 {
		return
	}
	ids.evicted = now
	cutoff := now.Add(-ids.window).UnixNano()
	if cutoff <= ids.from {
		return
	}
	for id, cs := range ids.m {
		cs = slices.DeleteFunc(cs, func(c compared) bool { return c.timeNs < cutoff })
		if len(cs) == 0 {
			delete(ids.m, id)
		} else {
			ids.m[id] = cs
		}
	}
	ids.from = cutoff
}

func (r *row) auditIDQuoted() string { return strconv.Quote(r.id.auditID) }

func timeLiteral(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// loadIdentities reads the identities of the events stored with a time at
// or after from.
func loadIdentities(vl *logstorage.Storage, now time.Time, window time.Duration) (*identities, error) {
	from := now.Add(-window)
	ids := &identities{window: window, from: from.UnixNano(), evicted: now, m: map[identity][]compared{}}
	q := fmt.Sprintf("_time:>=%s", timeLiteral(from.UnixNano()))
	err := scanIdentities(context.Background(), vl, q, func(id identity, c compared) {
		ids.m[id] = append(ids.m[id], c)
	})
	return ids, err
}

// scanIdentities runs the LogsQL filter and calls add (serialized) for
// every matching event's identity, its strings owned.
func scanIdentities(ctx context.Context, vl *logstorage.Storage, filter string, add func(identity, compared)) error {
	names := append([]string{keyCluster, "auditID", "stage", keyContentHash}, comparedKeys[:]...)
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	q, err := logstorage.ParseQuery(filter + " | fields _time, " + strings.Join(quoted, ", "))
	if err != nil {
		return fmt.Errorf("parse identity query %q: %w", filter, err)
	}
	var mu sync.Mutex
	qctx := logstorage.NewQueryContext(ctx, &logstorage.QueryStats{}, []logstorage.TenantID{{}}, q, false, nil)
	err = vl.RunQuery(qctx, func(_ uint, db *logstorage.DataBlock) {
		n := db.RowsCount()
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
			return strings.Clone(vals[i])
		}
		cluster, auditID, stage, hash, times := col(keyCluster), col("auditID"), col("stage"), col(keyContentHash), col("_time")
		colVals := make([][]string, len(comparedKeys))
		for i, k := range comparedKeys {
			colVals[i] = col(k)
		}
		cols := make([]string, len(comparedKeys))
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			for j := range cols {
				cols[j] = value(colVals[j], i)
			}
			var ts int64
			if times != nil {
				if t, err := time.Parse(time.RFC3339Nano, times[i]); err == nil {
					ts = t.UnixNano()
				}
			}
			add(identity{value(cluster, i), value(auditID, i), value(stage, i)},
				compared{hash: value(hash, i), cols: fingerprint(cols), timeNs: ts})
		}
	})
	if err != nil {
		return fmt.Errorf("run identity query %q: %w", filter, err)
	}
	return nil
}
