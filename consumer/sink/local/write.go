package local

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/schemas"
)

// WriteResult counts what one Write call did with its values.
// Inserted+Duplicates+Invalid equals the number of values.
type WriteResult struct {
	// Inserted values were new and are now stored.
	Inserted int
	// Duplicates were already stored under the same (cluster, auditID,
	// stage), by an earlier call or earlier in the same call: an apiserver
	// retry or a Kafka redelivery. They changed nothing.
	Duplicates int
	// Invalid values are not storable ProcessedEvents and were skipped.
	Invalid int
	// InvalidValues says which values were invalid and why, in input order
	// (len(InvalidValues) == Invalid), so that the caller can log them or
	// send them to the DLQ: they will never become valid by retrying.
	InvalidValues []InvalidValue
}

// InvalidValue is one value that Write skipped.
type InvalidValue struct {
	Index  int    // position in the values given to Write
	Reason string // human-readable, e.g. "missing auditpipe.cluster"
}

// Write stores values, each a ProcessedEvent JSON, in one transaction. It is
// idempotent on (cluster, auditID, stage). Invalid values are counted and
// skipped; a database error rolls everything back and is returned, so the
// caller can retry the whole batch (already stored values then count as
// duplicates). When Write returns nil, the transaction is durable.
func (s *Store) Write(ctx context.Context, values [][]byte) (WriteResult, error) {
	start := time.Now()
	var res WriteResult
	// Decode before taking the write lock: the lock is held only for the
	// inserts themselves.
	rows := make([]eventRow, 0, len(values))
	var buf bytes.Buffer
	for i, v := range values {
		row, err := decodeRow(v, &buf)
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

	inserted, duplicates, err := s.insert(ctx, rows)
	s.metrics.writeDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.writeErrors.Inc()
		return WriteResult{}, fmt.Errorf("write %d events to local store: %w", len(rows), err)
	}
	res.Inserted, res.Duplicates = inserted, duplicates
	s.metrics.events.WithLabelValues(outcomeInserted).Add(float64(inserted))
	s.metrics.events.WithLabelValues(outcomeDuplicate).Add(float64(duplicates))
	return res, nil
}

const insertEventSQL = `INSERT INTO events (
	cluster, audit_id, stage, level, verb, username, user_groups, resource,
	subresource, namespace, name, api_group, code, source_ip, user_agent,
	request_received, stage_ts, received_at, event
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cluster, audit_id, stage) DO NOTHING`

const insertTextSQL = `INSERT INTO events_words (rowid, text, kv) VALUES (?, ?, ?)`

func (s *Store) insert(ctx context.Context, rows []eventRow) (inserted, duplicates int, err error) {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("begin: %w", err)
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
		return 0, 0, fmt.Errorf("prepare insert: %w", err)
	}
	defer insEvent.Close()
	insText, err := tx.PrepareContext(ctx, insertTextSQL)
	if err != nil {
		return 0, 0, fmt.Errorf("prepare full-text insert: %w", err)
	}
	defer insText.Close()

	for _, r := range rows {
		result, err := insEvent.ExecContext(ctx,
			r.cluster, r.auditID, r.stage, r.level, r.verb, r.username, r.groups, r.resource,
			r.subresource, r.namespace, r.name, r.apiGroup, r.code, r.sourceIP, r.userAgent,
			r.requestReceived, r.stageTS, r.receivedAt, r.event)
		if err != nil {
			return 0, 0, fmt.Errorf("insert %s/%s/%s: %w", r.cluster, r.auditID, r.stage, err)
		}
		n, err := result.RowsAffected()
		if err != nil {
			return 0, 0, fmt.Errorf("insert %s/%s/%s: rows affected: %w", r.cluster, r.auditID, r.stage, err)
		}
		if n == 0 {
			duplicates++
			continue
		}
		id, err := result.LastInsertId()
		if err != nil {
			return 0, 0, fmt.Errorf("insert %s/%s/%s: last insert id: %w", r.cluster, r.auditID, r.stage, err)
		}
		if _, err := insText.ExecContext(ctx, id, r.text, r.kv); err != nil {
			return 0, 0, fmt.Errorf("index %s/%s/%s: %w", r.cluster, r.auditID, r.stage, err)
		}
		inserted++
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("commit: %w", err)
	}
	return inserted, duplicates, nil
}

// eventRow is one events row plus its full-text rendition.
type eventRow struct {
	cluster, auditID, stage, level, verb, username, groups string
	resource, subresource, namespace, name, apiGroup       string
	code                                                   sql.NullInt64
	sourceIP, userAgent                                    string
	requestReceived, stageTS, receivedAt                   sql.NullInt64
	// event and text are strings because the driver binds []byte as a BLOB,
	// and SQLite's JSON functions read a BLOB as JSONB, not as JSON text.
	event, text, kv string
}

// decodeRow validates one value and extracts the columns. buf is scratch
// space reused across values.
func decodeRow(value []byte, buf *bytes.Buffer) (eventRow, error) {
	// JSON is UTF-8 by definition; encoding/json would silently replace bad
	// bytes in decoded strings but keep them in the stored text.
	if !utf8.Valid(value) {
		return eventRow{}, errors.New("not valid UTF-8")
	}
	var ev schemas.ProcessedEvent
	if err := json.Unmarshal(value, &ev); err != nil {
		return eventRow{}, fmt.Errorf("not a ProcessedEvent: %w", err)
	}
	switch {
	case ev.Pipeline.Cluster == "":
		return eventRow{}, fmt.Errorf("missing %s.cluster", schemas.PipelineKey)
	case ev.AuditID == "":
		return eventRow{}, errors.New("missing auditID")
	case ev.Stage == "":
		return eventRow{}, errors.New("missing stage")
	}
	buf.Reset()
	if err := json.Compact(buf, value); err != nil {
		return eventRow{}, fmt.Errorf("compact: %w", err)
	}
	compact := buf.String()
	r := eventRow{
		cluster:         ev.Pipeline.Cluster,
		auditID:         ev.AuditID,
		stage:           ev.Stage,
		level:           ev.Level,
		verb:            ev.Verb,
		username:        ev.User.Username,
		groups:          strings.Join(ev.User.Groups, "\n"),
		userAgent:       ev.UserAgent,
		requestReceived: unixMilli(ev.RequestReceivedTimestamp),
		stageTS:         unixMilli(ev.StageTimestamp),
		receivedAt:      unixMilli(ev.Pipeline.ReceivedAt),
		event:           compact,
	}
	if o := ev.ObjectRef; o != nil {
		r.resource, r.subresource, r.namespace, r.name, r.apiGroup = o.Resource, o.Subresource, o.Namespace, o.Name, o.APIGroup
	}
	if st := ev.ResponseStatus; st != nil && st.Code != 0 {
		r.code = sql.NullInt64{Int64: int64(st.Code), Valid: true}
	}
	if len(ev.SourceIPs) > 0 {
		r.sourceIP = ev.SourceIPs[0]
	}
	text, kv, err := indexWords([]byte(compact), nil, nil)
	if err != nil {
		return eventRow{}, fmt.Errorf("index words: %w", err)
	}
	r.text, r.kv = string(text), string(kv)
	return r, nil
}

// unixMilli maps the zero time (field absent) to NULL rather than to year 1.
func unixMilli(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}
