package vlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
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
	// fieldLower holds, lower-cased, every CLS word of the event's
	// values (not auditpipe's own) that has upper case or non-ASCII
	// text, separated by lowerSeparator: with it, a lower-case word that
	// CLS finds in any case in some value is, as written, in some field,
	// so full text narrows by case-sensitive phrase filters, which the
	// storage's bloom filters serve (see wordFilter).
	fieldLower = "auditpipe:lower"
	// lowerSeparator separates fieldLower's words: CLS delimiters around
	// a byte that is none, so that no phrase's regexp (words separated by
	// delimiters only) spans two of them, while each word still has a
	// delimiter on both sides.
	lowerSeparator = "\n\x00\n"
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
	// fields: the stream field (cluster) first, then every flattened key
	// but the cluster, then auditpipe:rest and auditpipe:lower when any, then auditpipe:doc
	// (filled by insert). A window of its decoding part's arena
	// (decodeAll), which decode addresses by from and to.
	fields   []logstorage.Field
	from, to int
}

// Write stores values, each a ProcessedEvent JSON (eventstore.Writer):
// invalid values are counted and skipped, events already stored (same
// cluster, auditID, stage and content) are duplicates, a different event
// under a stored identity is stored marked auditpipe.auditIDReused. The
// batch goes to VictoriaLogs in one MustAddRows, concurrently with other
// Writes; then, unless Config.DeferSync, a checkpoint makes it durable
// before Write returns (see durable).
func (s *Store) Write(ctx context.Context, values [][]byte) (eventstore.WriteResult, error) {
	start := time.Now()
	var res eventstore.WriteResult
	// Decode before any lock: the walk is most of the Go-side work.
	rows, invalid := decodeAll(values, time.Now())
	res.Invalid, res.InvalidValues = len(invalid), invalid
	s.metrics.events.WithLabelValues(outcomeInvalid).Add(float64(res.Invalid))
	if len(rows) == 0 {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		s.metrics.writeErrors.Inc()
		return eventstore.WriteResult{}, fmt.Errorf("write %d events to vlstore: %w", len(rows), err)
	}

	ins, err := s.store(ctx, rows)
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

// store inserts rows with s.mu read-held: Writes of different partitions
// run their whole insert (identity lookups, event files, MustAddRows)
// concurrently, and only checkpoints, retention and Close, which take s.mu
// exclusively, hold them off. Unless DeferSync, it then waits until a
// checkpoint covers the rows (durable).
func (s *Store) store(ctx context.Context, rows []row) (insertResult, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return insertResult{}, errors.New("store closed")
	}
	out, err := s.insert(ctx, rows)
	if err == nil {
		// Searchable from the next read on (see visible).
		s.unflushed.Store(true)
	}
	// Counted even when every row was a duplicate: the stored copies it
	// saw may have been added by a Write whose checkpoint failed.
	seq := s.added.Add(1)
	s.mu.RUnlock()
	if err != nil || s.cfg.DeferSync {
		return out, err
	}
	if err := s.durable(seq); err != nil {
		// Not durable: the caller retries, and the rows added meanwhile
		// are duplicates then (the identity cache has them); the retry's
		// own durable call checkpoints them.
		return insertResult{}, err
	}
	return out, nil
}

// durable returns once a checkpoint that began after insert number seq
// (s.added) ended: concurrent callers share one checkpoint (group commit,
// as the SQLite store does since decision 0025: N partitions pay one
// checkpoint, not N). Sync calls it with the count so far.
func (s *Store) durable(seq uint64) error {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	if s.checkpointed >= seq {
		return nil // covered by the checkpoint this caller waited for
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("store closed")
	}
	// No insert runs now: every one counted so far is in the storage.
	covered := s.added.Load()
	if err := s.checkpoint(); err != nil {
		return err
	}
	s.checkpointed = covered
	s.metrics.groupWrites.Observe(float64(covered - s.lastCovered))
	s.lastCovered = covered
	s.ids.evict(time.Now())
	return nil
}

// insert decides per row whether it is new, a duplicate or a reused
// identity, writes the new events to their days' event files (docs) and
// fsyncs them, then adds their rows, each naming its event, in one
// MustAddRows: a row is never added before its event is durable. Called
// with s.mu read-held, concurrently with other inserts.
func (s *Store) insert(ctx context.Context, rows []row) (insertResult, error) {
	var out insertResult
	// Stored events outside the cache's window: one query for the batch.
	old, err := s.ids.lookupOld(ctx, s.vl, rows)
	if err != nil {
		return out, fmt.Errorf("look up stored identities: %w", err)
	}
	// The new rows: recorded in the identity cache at once (admit), so
	// that a second copy in this batch or a concurrent one is a
	// duplicate.
	type newRow struct {
		r      *row
		event  string // as stored: marked when reused
		reused bool
		day    string
		ref    docRef
	}
	var news []newRow
	byDay := map[string][]int{} // day → indexes into news
	var lastDay int64 = -1
	var dayName string
	for i, v := range s.ids.admit(rows, old) {
		r := &rows[i]
		if v.dup {
			out.duplicates++
			continue
		}
		if d := r.timeNs / int64(24*time.Hour); d != lastDay {
			lastDay, dayName = d, time.Unix(0, r.timeNs).UTC().Format(partitionName)
		}
		n := newRow{r: r, event: r.event, reused: v.reused, day: dayName}
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
	for i := range news {
		n := &news[i]
		if !n.reused {
			continue
		}
		marked, err := markReused(n.event)
		if err != nil {
			forgetNews()
			return insertResult{}, fmt.Errorf("mark %s/%s/%s reused: %w", n.r.id.cluster, n.r.id.auditID, n.r.id.stage, err)
		}
		n.event = marked
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

	// The rows go to the storage in parts at once, like decodeAll: the
	// storage's row buffer has a shard per CPU, and building its
	// in-memory parts is most of its work.
	type partOut struct {
		inserted int
		reused   []*row
		refused  []eventstore.InvalidValue
	}
	parts := make([]partOut, splitCount(len(news)))
	inParallel(len(news), len(parts), func(p, lo, hi int) {
		po := &parts[p]
		lr := logstorage.GetLogRows(nil, nil, nil, nil, "")
		defer logstorage.PutLogRows(lr)
		for _, n := range news[lo:hi] {
			r := n.r
			fields := r.fields
			if n.reused {
				// A copy: the arena's slots are exactly the event's.
				fields = append(append(fields[:len(fields)-1:len(fields)-1],
					logstorage.Field{Name: keyReused, Value: "true"}),
					logstorage.Field{Name: fieldDoc, Value: n.ref.String()})
			} else {
				fields[len(fields)-1].Value = n.ref.String()
			}
			before := lr.RowsCount()
			lr.MustAdd(logstorage.TenantID{}, r.timeNs, fields, 1)
			if lr.RowsCount() == before {
				// VictoriaLogs refused the row (too many fields, too long a
				// field name or row; it logs why on stderr): never
				// storable. Its event stays in the file, named by no row.
				po.refused = append(po.refused, eventstore.InvalidValue{Index: r.index,
					Reason: fmt.Sprintf("refused by VictoriaLogs (%d fields, %d bytes; too many or too long)", len(fields), len(r.event))})
				s.ids.forget(r.id, r.cmp)
				continue
			}
			if n.reused {
				po.reused = append(po.reused, r)
			}
			po.inserted++
		}
		if po.inserted > 0 {
			s.vl.MustAddRows(lr)
		}
	})
	for _, po := range parts {
		out.inserted += po.inserted
		out.reused = append(out.reused, po.reused...)
		out.refused = append(out.refused, po.refused...)
	}
	if out.inserted > 0 {
		s.daysMu.Lock()
		for day := range byDay {
			s.days[day] = true
		}
		s.daysMu.Unlock()
	}
	return out, nil
}

// visible makes every row added so far searchable before a read: the
// storage buffers added rows and makes them searchable only within a
// second (or when its buffer fills). Flushing at every Write instead cost
// its latency about a tenth (decision 0026, step 4 fourth round); reads
// are far rarer than Writes.
func (s *Store) visible() {
	if s.unflushed.Swap(false) {
		s.vl.DebugFlush()
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
// in-memory merge running (see inMemory). Called with s.mu held
// exclusively: no rows are added meanwhile, so the loop ends.
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

// decodeAll decodes values (see decode) in up to GOMAXPROCS parts at
// once: one busy cluster's events all come through one Kafka partition,
// so one Write's latency, not the number of partitions, bounds how fast
// the consumer keeps up with it. It returns the valid rows in values'
// order, each with its fields (in its part's arena), and the invalid
// values.
func decodeAll(values [][]byte, now time.Time) ([]row, []eventstore.InvalidValue) {
	type part struct {
		rows    []row
		invalid []eventstore.InvalidValue
	}
	parts := make([]part, splitCount(len(values)))
	inParallel(len(values), len(parts), func(p, lo, hi int) {
		var sc scratch
		var arena []logstorage.Field
		pt := &parts[p]
		pt.rows = make([]row, 0, hi-lo)
		for i := lo; i < hi; i++ {
			r, fields, err := decode(values[i], &sc, arena, now)
			if err != nil {
				pt.invalid = append(pt.invalid, eventstore.InvalidValue{Index: i, Reason: err.Error()})
				continue
			}
			if len(pt.rows) == 0 {
				// Sized by the first event: the batch's events are alike,
				// and growing the arena by doubling was a tenth of the
				// walk's cost.
				fields = slices.Grow(fields, (hi-i-1)*(r.to-r.from+4))
			}
			r.index = i
			arena = fields
			pt.rows = append(pt.rows, r)
		}
		// The arena grows no more: the rows' windows stay put.
		for i := range pt.rows {
			pt.rows[i].fields = arena[pt.rows[i].from:pt.rows[i].to:pt.rows[i].to]
		}
	})
	if len(parts) == 1 {
		return parts[0].rows, parts[0].invalid
	}
	rows := make([]row, 0, len(values))
	var invalid []eventstore.InvalidValue
	for _, pt := range parts {
		rows = append(rows, pt.rows...)
		invalid = append(invalid, pt.invalid...)
	}
	return rows, invalid
}

// minPart is the fewest values worth a goroutine of their own.
const minPart = 64

// splitCount is how many parts inParallel makes of n items.
func splitCount(n int) int {
	return max(1, min(runtime.GOMAXPROCS(0), n/minPart))
}

// inParallel calls fn for parts consecutive ranges [lo, hi) covering
// [0, n), each on its own goroutine (the first on the caller's), and
// returns when all returned.
func inParallel(n, parts int, fn func(part, lo, hi int)) {
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Go(func() { fn(p, p*n/parts, (p+1)*n/parts) })
	}
	fn(0, 0, n/parts)
	wg.Wait()
}

// decode validates value and flattens it into fields appended to arena:
// one walk over the compact JSON (flatten.WalkCompactString), the fields
// borrowing from the row's event string. On error arena is unchanged.
func decode(value []byte, sc *scratch, arena []logstorage.Field, now time.Time) (row, []logstorage.Field, error) {
	buf := &sc.buf
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
	var rest, lower strings.Builder
	if sc.seen == nil {
		sc.seen = map[string]struct{}{}
	}
	clear(sc.seen)
	err := flatten.WalkCompactString(event, func(key, v string, kind flatten.Kind) error {
		if !ownField(key) {
			appendLower(&lower, v, sc.seen)
		}
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
	if lower.Len() > 0 {
		fields = append(fields, logstorage.Field{Name: fieldLower, Value: lower.String()})
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

// scratch is what decode reuses from one event to the next.
type scratch struct {
	buf bytes.Buffer
	// seen: the words appendLower appended for the event, as written.
	seen map[string]struct{}
}

// appendLower appends to b (fieldLower) each CLS word of v (the runs
// between cql.Delimiters) that lower-casing changes or may (upper case,
// non-ASCII: strings.ToLower, as CLS's words), lower-cased, once per
// event (seen: the words as written so far): words, not whole values, so
// that a request body with its "kind":"Pod" and a last-applied
// configuration repeating "IfNotPresent" adds a few words, not a
// lower-cased copy of the body. Most text has no such word: it is skipped
// eight bytes at a time (nextMixed).
func appendLower(b *strings.Builder, v string, seen map[string]struct{}) {
	for i := 0; ; {
		j := nextMixed(v, i)
		if j == len(v) {
			return
		}
		// The word around j: i is 0 or just past the last word appended.
		start, end := j, j+1
		for start > i && !isDelimiterByte[v[start-1]] {
			start--
		}
		for end < len(v) && !isDelimiterByte[v[end]] {
			end++
		}
		word := v[start:end]
		i = end
		if timeShaped(word) {
			continue
		}
		if _, ok := seen[word]; ok {
			continue
		}
		seen[word] = struct{}{}
		if b.Len() > 0 {
			b.WriteString(lowerSeparator)
		}
		if !asciiOnly(word) {
			b.WriteString(strings.ToLower(word))
			continue
		}
		for k := 0; k < len(word); k++ {
			c := word[k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
		}
	}
}

// timeShaped reports whether word has no letters but T and Z (digits,
// '.', '+', '-'): the words of a timestamp (2026-12-03T10:00:00.5Z has
// 2026-12-03T10 and 00.5Z), two new ones in every event. appendLower
// leaves them out; full text looks for such words without
// auditpipe:lower (wordFilter, lowerFree).
func timeShaped(word string) bool {
	for i := 0; i < len(word); i++ {
		switch c := word[i]; {
		case c >= '0' && c <= '9', c == '.', c == '+', c == '-', c == 'T', c == 'Z', c == 't', c == 'z':
		default:
			return false
		}
	}
	return true
}

// nextMixed is the index of the first byte of v at or after i that is an
// ASCII upper-case letter or not ASCII, len(v) when there is none.
func nextMixed(v string, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(v); i += 8 {
		x := uint64(v[i]) | uint64(v[i+1])<<8 | uint64(v[i+2])<<16 | uint64(v[i+3])<<24 |
			uint64(v[i+4])<<32 | uint64(v[i+5])<<40 | uint64(v[i+6])<<48 | uint64(v[i+7])<<56
		if x&highs != 0 {
			break // a non-ASCII byte: found below
		}
		// Every byte < 0x80, so adding less than 0x80 carries out of none:
		// the high bit of byte+0x3F says byte >= 'A', of byte+0x25 byte >
		// 'Z'.
		if (x+0x3F*ones)&^(x+0x25*ones)&highs != 0 {
			break
		}
	}
	for ; i < len(v); i++ {
		if c := v[i]; c >= utf8.RuneSelf || c >= 'A' && c <= 'Z' {
			return i
		}
	}
	return i
}

// isDelimiterByte is cql.Delimiters by byte (they are all ASCII: a byte
// of a multi-byte rune is never one).
var isDelimiterByte = func() (t [256]bool) {
	for i := 0; i < len(cql.Delimiters); i++ {
		t[cql.Delimiters[i]] = true
	}
	return t
}()

func asciiOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
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
