package local

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/auditpipe/auditpipe/schemas"
)

// Write stores values, each a ProcessedEvent JSON, in one transaction. It is
// idempotent on (cluster, auditID, stage, auditpipe.contentHash), decision
// 0012: a retransmission of an event changes nothing, and a different event
// under an auditID already stored for the cluster and stage is stored too,
// marked auditpipe.auditIDReused. Invalid values are counted and
// skipped; a database error rolls everything back and is returned, so the
// caller can retry the whole batch (already stored values then count as
// duplicates). When Write returns nil, the transaction is durable.
//
// Concurrent Write calls share transactions (group commit, decision
// 0025): a call that finds the writer busy queues its rows, and the next
// call to get the writer stores every queued batch in one transaction,
// so N partitions cost one commit (FTS5 flush, WAL frames, fsync) instead
// of N. Each call still returns only after the transaction holding its
// rows committed, with the counts of its own values; a database error
// fails every batch of that transaction, and each caller retries its own.
func (s *Store) Write(ctx context.Context, values [][]byte) (WriteResult, error) {
	start := time.Now()
	var res WriteResult
	// Decode before taking the write lock: the lock is held only for the
	// inserts themselves.
	rows := make([]eventRow, 0, len(values))
	var buf bytes.Buffer
	var w words // scratch, reused across values
	for i, v := range values {
		row, err := decodeRowWith(v, &buf, &w)
		if err != nil {
			res.Invalid++
			res.InvalidValues = append(res.InvalidValues, InvalidValue{Index: i, Reason: err.Error()})
			continue
		}
		rows = append(rows, row)
	}
	s.metrics.events.WithLabelValues(outcomeInvalid).Add(float64(res.Invalid))
	if len(rows) == 0 {
		return res, nil
	}

	ins, err := s.commit(ctx, rows)
	s.metrics.writeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.writeErrors.Inc()
		return WriteResult{}, fmt.Errorf("write %d events to local store: %w", len(rows), err)
	}
	res.Inserted, res.Duplicates, res.Reused = ins.inserted, ins.duplicates, len(ins.reused)
	s.metrics.events.WithLabelValues(outcomeInserted).Add(float64(ins.inserted))
	s.metrics.events.WithLabelValues(outcomeDuplicate).Add(float64(ins.duplicates))
	s.metrics.reused.Add(float64(len(ins.reused)))
	for _, r := range ins.reused {
		// Evidence of a client choosing its own Audit-ID: worth a line of
		// its own, after the commit, so it is never logged for an event
		// that was not stored.
		s.logger.Warn("auditID reused: stored a different event under an auditID already stored for this cluster and stage",
			"cluster", r.cluster, "auditID", r.auditID, "stage", r.stage, "verb", r.verb, "user", r.username,
			"resource", r.resource, "namespace", r.namespace, "name", r.name)
	}
	if s.onReused != nil && len(ins.reused) > 0 {
		events := make([][]byte, len(ins.reused))
		for i, r := range ins.reused {
			events[i] = []byte(r.event)
		}
		s.onReused(ctx, events)
	}
	return res, nil
}

// insertEventSQL stores a row; when the last parameter is 1 the event is
// stored with auditpipe.auditIDReused set (json_set keeps the rest of the
// compact JSON as it is: member order, escapes, number spelling).
const insertEventSQL = `INSERT INTO events (
	cluster, audit_id, stage, level, verb, username, user_groups, resource,
	subresource, namespace, name, api_group, code, source_ip, user_agent,
	request_received, stage_ts, received_at, content_hash, event
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
	CASE WHEN ?21 THEN json_set(?20, '$.` + schemas.PipelineKey + `.auditIDReused', json('true')) ELSE ?20 END)
ON CONFLICT (cluster, audit_id, stage, content_hash) DO NOTHING`

// sameAuditIDsSQL finds the stored events with any of a batch's auditIDs
// (through events_audit_id; usually none), with their identity and what
// sameEvent compares. The placeholder list is filled in per chunk.
const sameAuditIDsSQL = `SELECT cluster, audit_id, stage, content_hash, level, verb, username, user_groups, resource,
	subresource, namespace, name, api_group, code, source_ip, user_agent,
	request_received, stage_ts
FROM events WHERE audit_id IN (%s)`

// lookupChunk bounds the auditIDs per identity query (SQLite allows 32766
// parameters; a few hundred keep the statement small).
const lookupChunk = 250

const insertTextSQL = `INSERT INTO events_words (rowid, text, kv) VALUES (?, ?, ?)`

// insertResult is what insert did with one caller's rows.
type insertResult struct {
	inserted, duplicates int
	reused               []*eventRow // inserted and marked
}

// writeRequest is one Write call's rows waiting for a transaction.
type writeRequest struct {
	rows []eventRow
	// done receives the outcome once the transaction holding rows
	// committed or failed (buffered: the committer never blocks).
	done chan writeOutcome
}

type writeOutcome struct {
	res insertResult
	err error
}

// commit stores rows in a transaction shared with the other Write calls
// queued meanwhile, and returns once it committed (or failed). The caller
// that gets the writer takes every queued request, its own included;
// callers whose request another caller took wait for their outcome. ctx
// bounds the wait: a request not yet taken is withdrawn when ctx ends.
func (s *Store) commit(ctx context.Context, rows []eventRow) (insertResult, error) {
	if err := ctx.Err(); err != nil {
		return insertResult{}, fmt.Errorf("before the transaction: %w", err)
	}
	req := &writeRequest{rows: rows, done: make(chan writeOutcome, 1)}
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
		// Taken by a committer already: its outcome follows shortly,
		// and a batch must not be reported failed when it is durable.
		out := <-req.done
		return out.res, out.err
	}
	// This call holds the writer. A committer that held it before may
	// have taken this request already.
	defer func() { <-s.writing }()
	if ctx.Err() != nil && s.withdraw(req) {
		// Ended while waiting (select chose the writer at random among
		// the ready cases): this call's batch is not written.
		return insertResult{}, fmt.Errorf("waiting for the writer: %w", ctx.Err())
	}
	s.queueMu.Lock()
	group := s.queue
	s.queue = nil
	s.queueMu.Unlock()
	if len(group) > 0 {
		// One caller's cancellation (a revoked partition) must not fail
		// the other callers' batches: the transaction runs to its end,
		// which takes as long as any single batch's used to.
		s.insertGroup(context.WithoutCancel(ctx), group)
	}
	out := <-req.done
	return out.res, out.err
}

// withdraw removes req from the queue and reports whether it was still
// there (no committer took it).
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

// insertGroup stores the rows of every request in one transaction and
// delivers each request's outcome: its own counts after the commit, or
// the transaction's error to all of them.
func (s *Store) insertGroup(ctx context.Context, group []*writeRequest) {
	batches := make([][]eventRow, len(group))
	n := 0
	for i, req := range group {
		batches[i] = req.rows
		n += len(req.rows)
	}
	s.metrics.txEvents.Observe(float64(n))
	s.metrics.txCalls.Observe(float64(len(group)))
	results, err := s.insert(ctx, batches)
	for i, req := range group {
		if err != nil {
			req.done <- writeOutcome{err: err}
			continue
		}
		req.done <- writeOutcome{res: results[i]}
	}
}

// insert stores batches in one transaction, in order, and returns what it
// did with each.
func (s *Store) insert(ctx context.Context, batches [][]eventRow) (res []insertResult, err error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// Prepared per transaction: with one connection the cost is two
	// statement compilations per batch, which is noise next to the inserts.
	insEvent, err := tx.PrepareContext(ctx, insertEventSQL)
	if err != nil {
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	defer insEvent.Close()
	insText, err := tx.PrepareContext(ctx, insertTextSQL)
	if err != nil {
		return nil, fmt.Errorf("prepare full-text insert: %w", err)
	}
	defer insText.Close()
	// One query per chunk of the batches rather than one per event (that
	// was a tenth of the store's CPU), inside the transaction. Rows
	// inserted earlier in this transaction are added to the map as they
	// are inserted, so they count as stored, as they did when each event
	// looked itself up: a row in two concurrent batches is inserted by
	// the first and a duplicate of the second.
	stored, err := storedWithIdentities(ctx, tx, batches)
	if err != nil {
		return nil, fmt.Errorf("look up stored events: %w", err)
	}

	res = make([]insertResult, len(batches))
	for b, rows := range batches {
		out := &res[b]
		for i := range rows {
			r := &rows[i]
			key := identity{r.cluster, r.auditID, r.stage}
			same := stored[key]
			if slices.ContainsFunc(same, func(c compared) bool { return sameEvent(c, r.compared) }) {
				out.duplicates++
				continue
			}
			reused := len(same) > 0
			result, err := insEvent.ExecContext(ctx,
				r.cluster, r.auditID, r.stage, r.level, r.verb, r.username, r.groups, r.resource,
				r.subresource, r.namespace, r.name, r.apiGroup, r.code, r.sourceIP, r.userAgent,
				r.requestReceived, r.stageTS, r.receivedAt, nullIfEmpty(r.contentHash), r.event, reused)
			if err != nil {
				return nil, fmt.Errorf("insert %s/%s/%s: %w", r.cluster, r.auditID, r.stage, err)
			}
			n, err := result.RowsAffected()
			if err != nil {
				return nil, fmt.Errorf("insert %s/%s/%s: rows affected: %w", r.cluster, r.auditID, r.stage, err)
			}
			if n == 0 {
				// A stored row with the same hash: sameEvent found it
				// above, so this cannot happen; the constraint is the
				// backstop.
				out.duplicates++
				continue
			}
			id, err := result.LastInsertId()
			if err != nil {
				return nil, fmt.Errorf("insert %s/%s/%s: last insert id: %w", r.cluster, r.auditID, r.stage, err)
			}
			text, kv := r.text, r.kv
			if reused {
				// The marker was added by the INSERT (json_set), after the
				// words were computed: index the stored event, so that
				// auditpipe.auditIDReused:true finds it. Rare, so the
				// read-back costs nothing on the common path.
				if text, kv, err = storedWords(ctx, tx, id); err != nil {
					return nil, fmt.Errorf("index %s/%s/%s: %w", r.cluster, r.auditID, r.stage, err)
				}
			}
			if _, err := insText.ExecContext(ctx, id, text, kv); err != nil {
				return nil, fmt.Errorf("index %s/%s/%s: %w", r.cluster, r.auditID, r.stage, err)
			}
			out.inserted++
			stored[key] = append(same, r.compared)
			if reused {
				out.reused = append(out.reused, r)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return res, nil
}

// storedWords computes the words of the event stored as row id.
func storedWords(ctx context.Context, tx *sql.Tx, id int64) (text, kv string, err error) {
	var ev string
	if err := tx.QueryRowContext(ctx, "SELECT event FROM events WHERE id = ?", id).Scan(&ev); err != nil {
		return "", "", fmt.Errorf("read back event %d: %w", id, err)
	}
	t, k, err := indexWords([]byte(ev), nil, nil)
	if err != nil {
		return "", "", fmt.Errorf("words of event %d: %w", id, err)
	}
	return string(t), string(k), nil
}

// compared is what decides whether two stored events are one: the content
// hash, and for events without one the columns the pipeline never changes
// after the apiserver wrote them (policy and redaction touch the level,
// the bodies and annotations, not these).
type compared struct {
	contentHash, level, verb, username, groups string
	resource, subresource, namespace, name     string
	apiGroup                                   string
	code                                       sql.NullInt64
	sourceIP, userAgent                        string
	requestReceived, stageTS                   sql.NullInt64
}

// sameEvent says whether a and b (same cluster, auditID and stage) are one
// event delivered twice. With both content hashes known, they decide. An
// event without a hash (stored before decision 0012, or written by a
// processor that predates it) can only be compared by its columns: equal
// columns count as the same event, as they did before, so a
// retransmission across the upgrade does not look like an attack; a
// difference in any of them is a different event. The level is not
// compared: a replay through another policy may lower it.
func sameEvent(a, b compared) bool {
	if a.contentHash != "" && b.contentHash != "" {
		return a.contentHash == b.contentHash
	}
	a.contentHash, b.contentHash = "", ""
	a.level, b.level = "", ""
	return a == b
}

// identity is what an event's stored copies share (decision 0012; the
// content hash or the columns then tell them apart).
type identity struct{ cluster, auditID, stage string }

// storedWithIdentities returns the stored events that share an identity
// with one of the rows of batches, by identity.
func storedWithIdentities(ctx context.Context, tx *sql.Tx, batches [][]eventRow) (map[identity][]compared, error) {
	var ids []any
	for _, rows := range batches {
		for i := range rows {
			ids = append(ids, rows[i].auditID)
		}
	}
	out := make(map[identity][]compared)
	for start := 0; start < len(ids); start += lookupChunk {
		args := ids[start:min(start+lookupChunk, len(ids))]
		query := fmt.Sprintf(sameAuditIDsSQL, strings.TrimSuffix(strings.Repeat("?,", len(args)), ","))
		rs, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var id identity
			var c compared
			var hash sql.NullString
			if err := rs.Scan(&id.cluster, &id.auditID, &id.stage, &hash, &c.level, &c.verb, &c.username, &c.groups, &c.resource,
				&c.subresource, &c.namespace, &c.name, &c.apiGroup, &c.code, &c.sourceIP, &c.userAgent,
				&c.requestReceived, &c.stageTS); err != nil {
				_ = rs.Close()
				return nil, err
			}
			c.contentHash = hash.String
			out[id] = append(out[id], c)
		}
		if err := rs.Err(); err != nil {
			_ = rs.Close()
			return nil, err
		}
		if err := rs.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// eventRow is one events row plus its full-text rendition.
type eventRow struct {
	cluster, auditID, stage string
	compared
	receivedAt sql.NullInt64
	// event and text are strings because the driver binds []byte as a BLOB,
	// and SQLite's JSON functions read a BLOB as JSONB, not as JSON text.
	event, text, kv string
}

// decodeRow validates one value and extracts the columns and the words of
// its compacted JSON in one walk over it (flatten.WalkCompact): the walk
// the full-text rows need anyway also yields every column, so the event is
// not decoded a second time into a schemas.ProcessedEvent (that decode
// was a third of the store's Go-side CPU). json.Compact validates the
// whole document first. The columns are read from the flattened keys the
// search language names them by (verb, user.username, objectRef.resource,
// auditpipe.cluster, ...); a column's value of the wrong JSON type makes
// the value invalid, as decoding it into the schema type did. buf is
// scratch space reused across values.
func decodeRow(value []byte, buf *bytes.Buffer) (eventRow, error) {
	return decodeRowWith(value, buf, &words{})
}

// decodeRowWith is decodeRow with the words' buffers reused across values:
// they grow once to an event's size instead of by doubling from nothing
// for every event, and the row gets exact-size copies.
func decodeRowWith(value []byte, buf *bytes.Buffer, w *words) (eventRow, error) {
	w.text, w.kv = w.text[:0], w.kv[:0]
	// JSON is UTF-8 by definition; a decoder would silently replace bad
	// bytes in decoded strings but keep them in the stored text.
	if !utf8.Valid(value) {
		return eventRow{}, errors.New("not valid UTF-8")
	}
	var compact string
	if jsonbytes.Valid(value) && !spaceOutsideStrings(value) {
		// The processor writes compact JSON, so this is the common case:
		// validated by the fast scanner and stored as it is (json.Compact
		// would validate with encoding/json's slower scanner and copy it
		// into buf unchanged).
		compact = string(value)
	} else {
		// Not compact, or invalid: json.Compact rejects it with the
		// reason the caller reports.
		buf.Reset()
		if err := json.Compact(buf, value); err != nil {
			return eventRow{}, fmt.Errorf("not a ProcessedEvent: %w", err)
		}
		compact = buf.String()
	}
	r := eventRow{event: compact}
	// The columns and words borrow from compact (no copy per value): the
	// row keeps compact as its stored text.
	err := flatten.WalkCompactString(compact, func(key, value string, kind flatten.Kind) error {
		if err := r.setColumn(key, value, kind); err != nil {
			return fmt.Errorf("not a ProcessedEvent: %s: %w", key, err)
		}
		w.add(key, value)
		return nil
	})
	if err != nil {
		return eventRow{}, err
	}
	switch {
	case r.cluster == "":
		return eventRow{}, fmt.Errorf("missing %s.cluster", schemas.PipelineKey)
	case r.auditID == "":
		return eventRow{}, errors.New("missing auditID")
	case r.stage == "":
		return eventRow{}, errors.New("missing stage")
	}
	r.text, r.kv = string(w.text), string(w.kv)
	return r, nil
}

// spaceOutsideStrings reports whether the valid JSON b has whitespace
// between its tokens, which json.Compact would remove.
func spaceOutsideStrings(b []byte) bool {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			return true
		case '"':
			i = jsonbytes.StringEnd(b, i) - 1
		}
	}
	return false
}

// setColumn stores the flattened key/value in its column, if it has one.
// Keys are the JSON member names of schemas.ProcessedEvent, so the columns
// are what decoding into that type gave (a response code of 0 is NULL, as
// omitempty wrote it; absent or null timestamps are NULL).
func (r *eventRow) setColumn(key, value string, kind flatten.Kind) error {
	var dst *string
	switch key {
	case "auditID":
		dst = &r.auditID
	case "stage":
		dst = &r.stage
	case "level":
		dst = &r.level
	case "verb":
		dst = &r.verb
	case "user.username":
		dst = &r.username
	case "userAgent":
		dst = &r.userAgent
	case "objectRef.resource":
		dst = &r.resource
	case "objectRef.subresource":
		dst = &r.subresource
	case "objectRef.namespace":
		dst = &r.namespace
	case "objectRef.name":
		dst = &r.name
	case "objectRef.apiGroup":
		dst = &r.apiGroup
	case schemas.PipelineKey + ".cluster":
		dst = &r.cluster
	case schemas.PipelineKey + ".contentHash":
		dst = &r.contentHash
	case "user.groups", "sourceIPs":
		list, err := stringList(value, kind)
		if err != nil {
			return err
		}
		if key == "sourceIPs" {
			r.sourceIP = ""
			if len(list) > 0 {
				r.sourceIP = list[0]
			}
			return nil
		}
		r.groups = strings.Join(list, "\n")
		return nil
	case "responseStatus.code":
		if kind != flatten.Number {
			return errors.New("not a number")
		}
		code, err := strconv.ParseInt(value, 10, 32)
		if err != nil {
			return err
		}
		r.code = sql.NullInt64{Int64: code, Valid: code != 0}
		return nil
	case "requestReceivedTimestamp":
		return parseMilli(&r.requestReceived, value, kind)
	case "stageTimestamp":
		return parseMilli(&r.stageTS, value, kind)
	case schemas.PipelineKey + ".receivedAt":
		return parseMilli(&r.receivedAt, value, kind)
	default:
		return nil
	}
	if kind != flatten.String {
		return errors.New("not a string")
	}
	*dst = value
	return nil
}

// stringList decodes a JSON array of strings (compact JSON text).
func stringList(value string, kind flatten.Kind) ([]string, error) {
	if kind != flatten.JSON || !strings.HasPrefix(value, "[") {
		return nil, errors.New("not an array")
	}
	var list []string
	if err := json.Unmarshal([]byte(value), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// parseMilli parses an RFC 3339 time into unix milliseconds, as decoding
// into a time.Time did; the zero time (year 1) is NULL like an absent one.
func parseMilli(dst *sql.NullInt64, value string, kind flatten.Kind) error {
	if kind != flatten.String {
		return errors.New("not a string")
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return err
	}
	*dst = unixMilli(t)
	return nil
}

// nullIfEmpty stores an unknown content hash as NULL, which the UNIQUE
// constraint ignores: events without a hash are told apart by sameEvent.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// unixMilli maps the zero time (field absent) to NULL rather than to year 1.
func unixMilli(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}
