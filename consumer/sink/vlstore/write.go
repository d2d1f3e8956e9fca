package vlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/auditpipe/auditpipe/schemas"
)

// Field names the store reads back (the flattened keys, decision 0026's
// layout) and the message field holding the event as written (0010).
const (
	keyCluster     = schemas.PipelineKey + ".cluster"
	keyContentHash = schemas.PipelineKey + ".contentHash"
	keyReceivedAt  = schemas.PipelineKey + ".receivedAt"
	keyReused      = schemas.PipelineKey + ".auditIDReused"
	keyStageTS     = "stageTimestamp"
	// fieldRest holds the values decode makes no field of (too long a
	// key, an unstorable stageTimestamp), one per line.
	fieldRest = "auditpipe:rest"
)

// maxFieldNameSize is lib/logstorage's limit on a field name (its
// unexported maxFieldNameSize): longer keys (a long annotation name) are
// not made fields.
const maxFieldNameSize = 128

// row is one valid value of a Write call, decoded in one walk.
type row struct {
	index  int // in the caller's values
	id     identity
	cmp    compared
	timeNs int64 // VictoriaLogs' _time
	event  string
	// fields[from:to] of the batch's arena: the stream field (cluster)
	// first, then every flattened key but the cluster, then auditpipe:rest
	// when any, then auditpipe:doc (filled by insert).
	from, to int
}

// Write stores values, each a ProcessedEvent JSON (eventstore.Writer):
// invalid values are counted and skipped, events already stored (same
// cluster, auditID, stage and content) are duplicates, a different event
// under a stored identity is stored marked auditpipe.auditIDReused. The
// batch goes to VictoriaLogs in one MustAddRows, then a checkpoint makes
// it durable before Write returns (see checkpoint).
func (s *Store) Write(ctx context.Context, values [][]byte) (eventstore.WriteResult, error) {
	start := time.Now()
	var res eventstore.WriteResult
	// Decode outside the lock: the walk is most of the Go-side work.
	rows := make([]row, 0, len(values))
	var arena []logstorage.Field
	var buf bytes.Buffer
	now := time.Now()
	for i, v := range values {
		r, fields, err := decode(v, &buf, arena, now)
		if err != nil {
			res.Invalid++
			res.InvalidValues = append(res.InvalidValues, eventstore.InvalidValue{Index: i, Reason: err.Error()})
			continue
		}
		r.index = i
		arena = fields
		rows = append(rows, r)
	}
	s.metrics.events.WithLabelValues(outcomeInvalid).Add(float64(res.Invalid))
	if len(rows) == 0 {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		s.metrics.writeErrors.Inc()
		return eventstore.WriteResult{}, fmt.Errorf("write %d events to vlstore: %w", len(rows), err)
	}

	ins, err := s.commit(ctx, rows, arena)
	s.metrics.writeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.writeErrors.Inc()
		return eventstore.WriteResult{}, fmt.Errorf("write %d events to vlstore: %w", len(rows), err)
	}
	res.Inserted, res.Duplicates, res.Reused = ins.inserted, ins.duplicates, len(ins.reused)
	if len(ins.refused) > 0 {
		res.Invalid += len(ins.refused)
		res.InvalidValues = append(res.InvalidValues, ins.refused...)
		slices.SortFunc(res.InvalidValues, func(a, b eventstore.InvalidValue) int { return a.Index - b.Index })
		s.metrics.events.WithLabelValues(outcomeInvalid).Add(float64(len(ins.refused)))
	}
	s.metrics.events.WithLabelValues(outcomeInserted).Add(float64(ins.inserted))
	s.metrics.events.WithLabelValues(outcomeDuplicate).Add(float64(ins.duplicates))
	s.metrics.reused.Add(float64(len(ins.reused)))
	if len(ins.reused) > 0 {
		events := make([][]byte, len(ins.reused))
		for i, r := range ins.reused {
			s.logger.Warn("auditID reused: stored a different event under an auditID already stored for this cluster and stage",
				"cluster", r.id.cluster, "auditID", r.id.auditID, "stage", r.id.stage)
			events[i] = values[r.index]
		}
		if s.opts.OnReused != nil {
			s.opts.OnReused(ctx, events)
		}
	}
	return res, nil
}

type insertResult struct {
	inserted, duplicates int
	reused               []*row
	refused              []eventstore.InvalidValue // by VictoriaLogs' limits
}

// insert decides per row whether it is new, a duplicate or a reused
// identity, writes the new events to their days' event files (docs) and
// fsyncs them, then adds their rows, each naming its event, in one
// MustAddRows: a row is never added before its event is durable. Called
// by the writer (s.mu held), which checkpoints after.
func (s *Store) insert(ctx context.Context, rows []row, arena []logstorage.Field) (insertResult, error) {
	var out insertResult
	// Stored events outside the cache's window: one query for the batch.
	if err := s.ids.lookupOld(ctx, s.vl, rows); err != nil {
		return out, fmt.Errorf("look up stored identities: %w", err)
	}
	// The new rows: recorded in the identity cache at once, so that a
	// second copy in the same batch is a duplicate.
	type newRow struct {
		r      *row
		event  string // as stored: marked when reused
		reused bool
		day    string
		ref    docRef
	}
	var news []newRow
	byDay := map[string][]int{} // day → indexes into news
	for i := range rows {
		r := &rows[i]
		dup, reused := s.ids.check(r.id, r.cmp)
		if dup {
			out.duplicates++
			continue
		}
		n := newRow{r: r, event: r.event, reused: reused, day: time.Unix(0, r.timeNs).UTC().Format(partitionName)}
		if reused {
			marked, err := markReused(r.event)
			if err != nil {
				return insertResult{}, fmt.Errorf("mark %s/%s/%s reused: %w", r.id.cluster, r.id.auditID, r.id.stage, err)
			}
			n.event = marked
		}
		s.ids.add(r.id, r.cmp)
		byDay[n.day] = append(byDay[n.day], len(news))
		news = append(news, n)
	}
	if len(news) == 0 {
		return out, nil
	}
	// On failure nothing of the batch is stored: out of the cache, so
	// that the caller's retry stores it.
	forgetNews := func() {
		for _, n := range news {
			s.ids.forget(n.r.id, n.r.cmp)
		}
	}
	for day, idx := range byDay {
		events := make([]string, len(idx))
		for j, i := range idx {
			events[j] = news[i].event
		}
		refs, err := s.docs.appendBlock(day, events)
		if err != nil {
			forgetNews()
			return insertResult{}, err
		}
		for j, i := range idx {
			news[i].ref = refs[j]
		}
	}
	if err := s.docs.sync(maps.Keys(byDay)); err != nil {
		forgetNews()
		return insertResult{}, err
	}

	lr := logstorage.GetLogRows(nil, nil, nil, nil, "")
	defer logstorage.PutLogRows(lr)
	for _, n := range news {
		r := n.r
		fields := arena[r.from:r.to]
		if n.reused {
			// A copy: the arena's slots are exactly the event's.
			fields = append(append(fields[:len(fields)-1:len(fields)-1],
				logstorage.Field{Name: keyReused, Value: "true"}),
				logstorage.Field{Name: fieldDoc, Value: n.ref.String()})
			out.reused = append(out.reused, r)
		} else {
			fields[len(fields)-1].Value = n.ref.String()
		}
		before := lr.RowsCount()
		lr.MustAdd(logstorage.TenantID{}, r.timeNs, fields, 1)
		if lr.RowsCount() == before {
			// VictoriaLogs refused the row (too many fields, too long a
			// field name or row; it logs why on stderr): never storable.
			// Its event stays in the file, named by no row.
			out.refused = append(out.refused, eventstore.InvalidValue{Index: r.index,
				Reason: fmt.Sprintf("refused by VictoriaLogs (%d fields, %d bytes; too many or too long)", len(fields), len(r.event))})
			if n.reused {
				out.reused = out.reused[:len(out.reused)-1]
			}
			s.ids.forget(r.id, r.cmp)
			continue
		}
		s.days[n.day] = true
		out.inserted++
	}
	if out.inserted > 0 {
		s.vl.MustAddRows(lr)
	}
	return out, nil
}

// writeRequest is one Write call's rows waiting for the writer.
type writeRequest struct {
	rows  []row
	arena []logstorage.Field
	// done receives the outcome once the checkpoint covering the rows
	// ran (buffered: the writer never blocks).
	done chan writeOutcome
}

type writeOutcome struct {
	res insertResult
	err error
}

// commit stores rows together with the other Write calls queued
// meanwhile, sharing one checkpoint (group commit, as the SQLite store
// does since decision 0025: N partitions pay one checkpoint, not N). The
// caller that gets the writer takes every queued request, its own
// included; the others wait for their outcome. ctx bounds the wait: a
// request not yet taken is withdrawn when ctx ends.
func (s *Store) commit(ctx context.Context, rows []row, arena []logstorage.Field) (insertResult, error) {
	req := &writeRequest{rows: rows, arena: arena, done: make(chan writeOutcome, 1)}
	s.queueMu.Lock()
	s.queue = append(s.queue, req)
	s.queueMu.Unlock()
	select {
	case out := <-req.done:
		return out.res, out.err
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		if s.withdraw(req) {
			return insertResult{}, fmt.Errorf("waiting for the writer: %w", ctx.Err())
		}
		// Taken by a writer already: it is stored and checkpointed
		// shortly, and must not be reported failed.
		out := <-req.done
		return out.res, out.err
	}
	defer func() { <-s.writing }()
	s.queueMu.Lock()
	group := s.queue
	s.queue = nil
	s.queueMu.Unlock()
	if len(group) > 0 {
		// One caller's cancellation (a revoked partition) must not fail
		// the others' batches.
		s.writeGroup(context.WithoutCancel(ctx), group)
	}
	out := <-req.done
	return out.res, out.err
}

// withdraw removes req from the queue and reports whether it was still
// there.
func (s *Store) withdraw(req *writeRequest) bool {
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	i := slices.Index(s.queue, req)
	if i < 0 {
		return false
	}
	s.queue = slices.Delete(s.queue, i, i+1)
	return true
}

// writeGroup inserts every request's rows in queue order, checkpoints
// once, and then delivers each request its own outcome.
func (s *Store) writeGroup(ctx context.Context, group []*writeRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	outs := make([]writeOutcome, len(group))
	for i, req := range group {
		if s.closed {
			outs[i].err = errors.New("store closed")
			continue
		}
		outs[i].res, outs[i].err = s.insert(ctx, req.rows, req.arena)
	}
	s.metrics.groupWrites.Observe(float64(len(group)))
	s.writes++
	switch {
	case s.closed:
	case s.cfg.DeferSync:
		// Durable at Sync. Visible to searches now: the storage would
		// make its buffered rows searchable only within a second. (Leaving
		// them to the next read or Sync measured no cheaper: the storage
		// then flushes larger buffers inline in MustAddRows.)
		s.vl.DebugFlush()
		s.ids.evict(time.Now())
	case s.writes%s.checkpointEvery == 0:
		if err := s.checkpoint(); err != nil {
			// Not durable: the callers retry, and the rows added meanwhile
			// are duplicates then (the identity cache has them).
			for i := range outs {
				if outs[i].err == nil {
					outs[i] = writeOutcome{err: err}
				}
			}
		}
		s.ids.evict(time.Now())
	}
	for i, req := range group {
		req.done <- outs[i]
	}
}

// checkpoint makes everything added so far durable. lib/logstorage has no
// public flush-and-sync: DebugFlush turns the buffered rows into in-memory
// parts, and a snapshot of each partition written since the last
// checkpoint writes its in-memory parts to fsynced file parts (and
// hard-links them); the snapshot is deleted at once. This is decision
// 0026's `engineeval -vl-sync`, with one correction the consumer's kill -9
// test found: a snapshot skips the in-memory parts a background merge is
// combining at that moment, and that merge's result is another in-memory
// part. So checkpoint waits for in-memory merges to finish, snapshots, and
// repeats until the storage reports no row left only in memory and no
// in-memory merge running (see inMemory). Called with s.mu held: no rows
// are added meanwhile, so the loop ends.
//
// A failure to delete a snapshot is logged, not returned: the data is
// durable by then, and the storage deletes stale snapshots itself only
// with SnapshotsMaxAge (not set), so it is worth a warning.
func (s *Store) checkpoint() error {
	if len(s.days) == 0 {
		return nil
	}
	start := time.Now()
	s.vl.DebugFlush()
	var waited time.Duration
	for rounds := 1; ; rounds++ {
		waitStart := time.Now()
		for !s.inMemory().idle() {
			if time.Since(start) > checkpointTimeout {
				return fmt.Errorf("checkpoint: in-memory merges still running after %v", checkpointTimeout)
			}
			time.Sleep(200 * time.Microsecond)
		}
		waited += time.Since(waitStart)
		for day := range s.days {
			for _, p := range s.vl.PartitionSnapshotMustCreate(day) {
				if err := s.vl.PartitionSnapshotDelete(p); err != nil {
					s.logger.Warn("vlstore: delete checkpoint snapshot", "snapshot", p, "err", err)
				}
			}
		}
		m := s.inMemory()
		if m.idle() && m.rows == 0 {
			s.metrics.checkpointRounds.Observe(float64(rounds))
			s.metrics.checkpointWait.Observe(waited.Seconds())
			break
		}
		if time.Since(start) > checkpointTimeout {
			return fmt.Errorf("checkpoint: %d rows still only in memory after %v", m.rows, checkpointTimeout)
		}
	}
	clear(s.days)
	s.metrics.checkpointDuration.Observe(time.Since(start).Seconds())
	return nil
}

// checkpointTimeout bounds a checkpoint's wait for the storage's
// in-memory merges; past it the checkpoint fails (and is retried).
const checkpointTimeout = 30 * time.Second

// memoryState is what the storage holds only in memory.
type memoryState struct {
	rows   uint64 // data rows not in file parts yet
	merges uint64 // in-memory merges running (data and stream index)
}

func (m memoryState) idle() bool { return m.merges == 0 }

func (s *Store) inMemory() memoryState {
	var st logstorage.StorageStats
	s.vl.UpdateStats(&st)
	p := st.PartitionStats
	return memoryState{
		rows:   p.InmemoryRowsCount,
		merges: p.ActiveInmemoryMerges + p.IndexdbActiveInmemoryMerges,
	}
}

// decode validates value and flattens it into fields appended to arena:
// one walk over the compact JSON (flatten.WalkCompactString), the fields
// borrowing from the row's event string. On error arena is unchanged.
func decode(value []byte, buf *bytes.Buffer, arena []logstorage.Field, now time.Time) (row, []logstorage.Field, error) {
	if !utf8.Valid(value) {
		return row{}, arena, errors.New("not valid UTF-8")
	}
	var event string
	if jsonbytes.Valid(value) && !spaceOutsideStrings(value) {
		event = string(value) // the processor's compact JSON: stored as it is
	} else {
		buf.Reset()
		if err := json.Compact(buf, value); err != nil {
			return row{}, arena, fmt.Errorf("not a ProcessedEvent: %w", err)
		}
		event = buf.String()
	}
	r := row{event: event, from: len(arena)}
	fields := append(arena, logstorage.Field{Name: keyCluster}) // the stream field, filled below
	var cols [len(comparedKeys)]string
	var receivedAt string
	var rest strings.Builder
	err := flatten.WalkCompactString(event, func(key, v string, kind flatten.Kind) error {
		switch key {
		case keyCluster, "auditID", "stage", keyContentHash:
			if kind != flatten.String {
				return fmt.Errorf("not a ProcessedEvent: %s: not a string", key)
			}
			switch key {
			case keyCluster:
				r.id.cluster = v
				return nil // the stream field, already first
			case "auditID":
				r.id.auditID = v
			case "stage":
				r.id.stage = v
			case keyContentHash:
				r.cmp.setHash(v)
			}
		case keyReceivedAt:
			receivedAt = v
		}
		if i, ok := comparedIndex[key]; ok {
			cols[i] = v
		}
		if key == keyStageTS && !storableTime(v, now) {
			rest.WriteString(v)
			rest.WriteByte('\n')
			// The zero time (year 1) is no time, as in the SQLite store:
			// not a field, so that the read side's stageTimestamp:*
			// tells the events with a time apart (the value goes to
			// auditpipe:rest).
			return nil
		}
		if len(key) > maxFieldNameSize {
			// VictoriaLogs drops a whole row with a longer field name;
			// the value goes to auditpipe:rest, searchable as text only.
			rest.WriteString(v)
			rest.WriteByte('\n')
			return nil
		}
		fields = append(fields, logstorage.Field{Name: key, Value: v})
		return nil
	})
	switch {
	case err != nil:
		return row{}, arena, fmt.Errorf("not a ProcessedEvent: %w", err)
	case r.id.cluster == "":
		return row{}, arena, fmt.Errorf("missing %s", keyCluster)
	case r.id.auditID == "":
		return row{}, arena, errors.New("missing auditID")
	case r.id.stage == "":
		return row{}, arena, errors.New("missing stage")
	}
	fields[r.from].Value = r.id.cluster
	if rest.Len() > 0 {
		// Values that are no field (see above) stay searchable as text:
		// the read side's full-text prefilter looks at every field.
		fields = append(fields, logstorage.Field{Name: fieldRest, Value: rest.String()})
	}
	// The event's reference in its day's file, filled by insert.
	fields = append(fields, logstorage.Field{Name: fieldDoc})
	r.to = len(fields)

	ts, err := eventTime(cols[comparedIndex[keyStageTS]], receivedAt, now)
	if err != nil {
		return row{}, arena, err
	}
	r.timeNs = ts
	r.cmp.cols = fingerprint(cols[:])
	r.cmp.timeNs = ts
	return r, fields, nil
}

// eventTime is VictoriaLogs' _time for an event: its stageTimestamp, or
// for an event without one the storage can keep (none, the zero time, or
// a time outside the storage's range: see storableTime) the producer's
// receivedAt, else now: the storage needs a time. Queries bound
// stageTimestamp, so the read side tells those events apart by the
// missing stageTimestamp field (timeFilters, Store.newest). An
// unparsable stageTimestamp is not a ProcessedEvent.
func eventTime(stageTS, receivedAt string, now time.Time) (int64, error) {
	if stageTS != "" {
		st, err := time.Parse(time.RFC3339Nano, stageTS)
		if err != nil {
			return 0, fmt.Errorf("not a ProcessedEvent: %s: %w", keyStageTS, err)
		}
		if inStorageRange(st, now) {
			return st.UnixNano(), nil
		}
	}
	if receivedAt != "" {
		if rt, err := time.Parse(time.RFC3339Nano, receivedAt); err == nil && inStorageRange(rt, now) {
			return rt.UnixNano(), nil
		}
	}
	return now.UnixNano(), nil
}

// storableTime reports whether v is a stageTimestamp the storage keeps as
// the event's time: parsable, not the zero time (what encoding/json
// writes for an unset time), and inside the range the storage accepts
// (MustAddRows drops other rows with only a throttled warning). Other
// events are stored all the same, without the stageTimestamp field (the
// value in the event and in auditpipe:rest), like events without one: an event with a
// stageTimestamp decades old (a fixture's zero time moved by a replay) is
// kept, not lost.
func storableTime(v string, now time.Time) bool {
	t, err := time.Parse(time.RFC3339Nano, v)
	return err == nil && inStorageRange(t, now)
}

// inStorageRange: t is inside the time range the storage accepts, with a
// day's margin at the past end and an hour's at the future one.
func inStorageRange(t time.Time, now time.Time) bool {
	return !t.IsZero() && t.After(now.Add(-storageRetention+24*time.Hour)) && t.Before(now.Add(futureRetention-time.Hour))
}

// markReused returns the compact event with auditpipe.auditIDReused set to
// true, the rest as it was (member order, escapes, numbers): the member is
// appended to the auditpipe object, or replaced if present. Rare (a client
// reusing Audit-IDs), so it may decode.
func markReused(event string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(event))
	if _, err := dec.Token(); err != nil { // '{'
		return "", err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		startValue := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", err
		}
		if tok != schemas.PipelineKey {
			continue
		}
		end := int(dec.InputOffset())
		// The value is compact and ends at end; it starts after the ':'
		// that follows startValue.
		valueStart := end - len(raw)
		if raw[0] != '{' || valueStart < startValue {
			return "", fmt.Errorf("%s is not an object", schemas.PipelineKey)
		}
		from, to, members, err := memberValue(raw, "auditIDReused")
		if err != nil {
			return "", err
		}
		var marked string
		switch {
		case from >= 0:
			// Replaced where it stands, as SQLite's json_set does: a
			// copy marked already (a migration, a replay of a stored
			// store) stays byte for byte what it was.
			marked = string(raw[:from]) + "true" + string(raw[to:])
		case members == 0:
			marked = `{"auditIDReused":true}`
		default:
			marked = string(raw[:len(raw)-1]) + `,"auditIDReused":true}`
		}
		return event[:valueStart] + marked + event[end:], nil
	}
	return "", fmt.Errorf("no %s object", schemas.PipelineKey)
}

// memberValue finds key among the members of the compact JSON object obj:
// the byte range of its value (from -1 when absent) and how many members
// obj has.
func memberValue(obj json.RawMessage, key string) (from, to, members int, err error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // '{'
		return 0, 0, 0, err
	}
	from = -1
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, 0, 0, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, 0, err
		}
		members++
		if tok == key {
			to = int(dec.InputOffset())
			from = to - len(v)
		}
	}
	return from, to, members, nil
}

// spaceOutsideStrings reports whether the valid JSON b has whitespace
// between its tokens, which json.Compact would remove.
func spaceOutsideStrings(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			return true
		case '"':
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		}
	}
	return false
}
