package vlstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// storedEvent is one event read back, with what the result order needs.
type storedEvent struct {
	// msg is the event as written, read from its file on demand
	// (Store.event): most rows a read looks at are not in its page.
	msg string
	// day and ref name the event in its day's file.
	day string
	ref docRef
	// ms is stageTimestamp in unix milliseconds (the SQLite store's
	// stage_ts, which the order compares); hasTS is false for an event
	// without one (those sort last).
	ms                      int64
	hasTS                   bool
	cluster, auditID, stage string
	reused                  bool
	// tie orders what the rest leaves equal (a hash of msg): stable
	// across calls, so that cursors can name an event.
	tie string
}

// storedFields are the fields a storedEvent is read from, in readStored's order.
var storedFields = []string{fieldDoc, "_time", keyCluster, "auditID", "stage", keyStageTS, keyReused, "_msg"}

// readStored reads a storedEvent from storedFields' values; the event
// itself stays in its day's file (the day of its _time: its partition's)
// until Store.event reads it.
func readStored(vals []string) (storedEvent, error) {
	st := storedEvent{cluster: vals[2], auditID: vals[3], stage: vals[4], hasTS: vals[5] != "", reused: vals[6] == "true"}
	t, err := time.Parse(time.RFC3339Nano, vals[1])
	if err != nil {
		return storedEvent{}, fmt.Errorf("read _time of %s/%s/%s: %w", st.cluster, st.auditID, st.stage, err)
	}
	if st.hasTS {
		st.ms = t.UnixMilli()
	}
	st.day = t.UTC().Format(partitionName)
	if vals[0] == "" && vals[7] != "" {
		// Written before the event files (3 December 2026): the event is
		// the row's _msg.
		st.msg = vals[7]
		st.tie = st.day + "-" + strconv.FormatUint(xxhash.Sum64String(st.msg), 16)
		return st, nil
	}
	if st.ref, err = parseDocRef(vals[0]); err != nil {
		return storedEvent{}, fmt.Errorf("read %s/%s/%s: %w", st.cluster, st.auditID, st.stage, err)
	}
	// The place in the file is the write order within the day: copies
	// under a reused auditID keep it, as SQLite's row order does.
	// 16 hex digits, so that ties compare as strings in ref order (once
	// per row read: no fmt).
	var ref [8]byte
	binary.BigEndian.PutUint64(ref[:], uint64(st.ref))
	st.tie = st.day + hex.EncodeToString(ref[:])
	return st, nil
}

// event returns st's event as written, reading it from its file once.
func (s *Store) event(st *storedEvent) (string, error) {
	if st.msg == "" {
		msg, err := s.docs.get(st.day, st.ref)
		if err != nil {
			return "", fmt.Errorf("read %s/%s/%s: %w", st.cluster, st.auditID, st.stage, err)
		}
		st.msg = msg
	}
	return st.msg, nil
}

// events returns the page's events as written.
func (s *Store) events(page []storedEvent) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(page))
	for i := range page {
		msg, err := s.event(&page[i])
		if err != nil {
			return nil, err
		}
		out[i] = json.RawMessage(msg)
	}
	return out, nil
}

// compareStored is the result order of both stores: newest first by
// stageTimestamp (milliseconds), events without one last, then cluster,
// auditID and stage. SQLite breaks the remaining ties (copies under a
// reused auditID) by insertion order; the first copy is the one without
// the marker, so unmarked first, then a hash of the JSON, for a stable
// order.
func compareStored(a, b *storedEvent) int {
	if a.hasTS != b.hasTS {
		if a.hasTS {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(b.ms, a.ms); c != 0 && a.hasTS {
		return c
	}
	if c := cmp.Or(cmp.Compare(a.cluster, b.cluster), cmp.Compare(a.auditID, b.auditID), cmp.Compare(a.stage, b.stage)); c != 0 {
		return c
	}
	if a.reused != b.reused {
		if b.reused {
			return -1
		}
		return 1
	}
	return cmp.Compare(a.tie, b.tie)
}

// fetch reads every event that filter selects.
func (s *Store) fetch(ctx context.Context, filter string, keep func(*storedEvent) bool) ([]storedEvent, error) {
	var out []storedEvent
	var rerr error
	err := s.runRows(ctx, filter+" | fields "+fieldList(storedFields), storedFields, func(vals []string) {
		st, err := readStored(vals)
		if err != nil {
			rerr = err
			return
		}
		if keep == nil || keep(&st) {
			out = append(out, st)
		}
	})
	if err == nil {
		err = rerr
	}
	return out, err
}

func pageLimit(limit int) int {
	if limit <= 0 {
		limit = eventstore.DefaultLimit
	}
	return min(limit, eventstore.MaxLimit)
}

// Query returns the newest events matching q and how many match in all.
// The field filters, the cluster and the time range are LogsQL (exact
// filters, the cluster's stream, _time), and so is the total (a count()
// over the storage's columns: no event is read for it). Full text (Text)
// is CLS's words, which LogsQL cannot say exactly: the storage returns a
// superset (textQuery.prefilter) and each candidate is checked in Go.
// Page and total may come from two moments of a store being written to
// (the storage has no snapshots).
func (s *Store) Query(ctx context.Context, q eventstore.Query) (eventstore.QueryResult, error) {
	defer s.observeQuery(time.Now())
	limit := pageLimit(q.Limit)
	var filters []string
	if q.Cluster != "" {
		filters = append(filters, clusterFilter(q.Cluster))
	}
	for _, f := range [...]struct{ key, value string }{
		{"verb", q.Verb}, {"user.username", q.User}, {"objectRef.resource", q.Resource}, {"objectRef.namespace", q.Namespace},
	} {
		if f.value != "" {
			filters = append(filters, exactFilter(f.key, f.value))
		}
	}
	timed := !q.From.IsZero() || !q.To.IsZero()
	filters = append(filters, timeFilters(q.From, q.To)...)
	res := eventstore.QueryResult{Events: []json.RawMessage{}}
	if q.Text != "" {
		page, total, err := s.queryText(ctx, filters, compileText(q.Text), limit)
		if err != nil {
			return eventstore.QueryResult{}, fmt.Errorf("vlstore: query: %w", err)
		}
		res.Total = total
		if res.Events, err = s.events(page); err != nil {
			return eventstore.QueryResult{}, fmt.Errorf("vlstore: query: %w", err)
		}
		return res, nil
	}
	total, err := s.count(ctx, joinFilters(filters))
	if err != nil {
		return eventstore.QueryResult{}, fmt.Errorf("vlstore: query: %w", err)
	}
	res.Total = total
	if total == 0 {
		return res, nil
	}
	page, err := s.newest(ctx, filters, timed, limit, nil)
	if err != nil {
		return eventstore.QueryResult{}, fmt.Errorf("vlstore: query: %w", err)
	}
	if res.Events, err = s.events(page); err != nil {
		return eventstore.QueryResult{}, fmt.Errorf("vlstore: query: %w", err)
	}
	return res, nil
}

// newest returns the first limit events that filters select, in the
// result order, after the position after when it is not nil (a cursor).
// The storage sorts by nanosecond _time, the order is by milliseconds
// then identity: a top-k by _time finds the k-th event's millisecond, and
// everything from that millisecond on is read and sorted here (the page
// plus the ties of one millisecond). Events without stageTimestamp (their
// _time is receivedAt or the write time) come last, read apart, and only
// when the time range is unbounded (they never match one).
func (s *Store) newest(ctx context.Context, filters []string, timed bool, limit int, after *storedEvent) ([]storedEvent, error) {
	withTS := append(slices.Clip(filters), strconv.Quote(keyStageTS)+":*")
	if timed {
		withTS = filters // timeFilters requires stageTimestamp already
	}
	keep := func(*storedEvent) bool { return true }
	if after != nil {
		keep = func(e *storedEvent) bool { return compareStored(after, e) < 0 }
	}
	var page []storedEvent
	if after == nil || after.hasTS {
		k := limit
		if after != nil {
			// Up to after's millisecond, whose events at or before
			// after are dropped here: ask for as many more.
			end := "_time:<" + timeLiteral(time.UnixMilli(after.ms+1).UnixNano())
			ties, err := s.count(ctx, joinFilters(append(slices.Clip(withTS), "_time:>="+timeLiteral(time.UnixMilli(after.ms).UnixNano()), end)))
			if err != nil {
				return nil, err
			}
			withTS = append(slices.Clip(withTS), end)
			k += ties
		}
		oldest, n, err := s.kthTime(ctx, joinFilters(withTS), k)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			from := time.UnixMilli(time.Unix(0, oldest).UnixMilli()).UnixNano()
			page, err = s.fetch(ctx, joinFilters(append(slices.Clip(withTS), "_time:>="+timeLiteral(from))), keep)
			if err != nil {
				return nil, err
			}
			slices.SortFunc(page, func(a, b storedEvent) int { return compareStored(&a, &b) })
			page = page[:min(len(page), limit)]
		}
	}
	if len(page) < limit && !timed {
		rest, err := s.fetch(ctx, joinFilters(append(slices.Clip(filters), "-"+strconv.Quote(keyStageTS)+":*")), keep)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(rest, func(a, b storedEvent) int { return compareStored(&a, &b) })
		page = append(page, rest[:min(len(rest), limit-len(page))]...)
	}
	return page, nil
}

// kthTime returns the oldest _time (unix ns) of the k newest events filter
// selects, and how many there are (at most k).
func (s *Store) kthTime(ctx context.Context, filter string, k int) (int64, int, error) {
	var oldest int64
	n := 0
	var perr error
	err := s.runRows(ctx, filter+" | sort by (_time desc) limit "+strconv.Itoa(k)+" | fields _time", []string{"_time"},
		func(vals []string) {
			t, err := time.Parse(time.RFC3339Nano, vals[0])
			if err != nil {
				perr = fmt.Errorf("read _time %q: %w", vals[0], err)
				return
			}
			if n == 0 || t.UnixNano() < oldest {
				oldest = t.UnixNano()
			}
			n++
		})
	if err == nil {
		err = perr
	}
	return oldest, n, err
}

// queryText is Query with full text: the storage narrows by the filters
// and the text's prefilter, every candidate is checked against CLS's words
// here, and the matches are counted and sorted here. Its cost grows with
// the candidates (the events holding the text's words in VictoriaLogs'
// sense), not with the store.
func (s *Store) queryText(ctx context.Context, filters []string, tq textQuery, limit int) ([]storedEvent, int, error) {
	if tq.none {
		return nil, 0, nil
	}
	if pf := tq.prefilter(s.lowered); pf != "" {
		filters = append(slices.Clip(filters), pf)
	}
	// Only the page is kept: the matches are counted, and the newest
	// limit of them held, sorting and cutting whenever twice as many
	// piled up (memory bounded by the page, not by the matches).
	var top []storedEvent
	total := 0
	cut := func() {
		slices.SortFunc(top, func(a, b storedEvent) int { return compareStored(&a, &b) })
		top = top[:min(len(top), limit)]
	}
	var rerr error
	_, err := s.fetch(ctx, joinFilters(filters), func(st *storedEvent) bool {
		msg, err := s.event(st)
		if err != nil {
			rerr = cmp.Or(rerr, err)
			return false
		}
		if tq.match(msg) {
			total++
			top = append(top, *st)
			if len(top) >= 2*limit {
				cut()
			}
		}
		return false
	})
	if err = cmp.Or(err, rerr); err != nil {
		return nil, 0, err
	}
	cut()
	return top, total, nil
}
