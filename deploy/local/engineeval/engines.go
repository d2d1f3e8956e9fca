package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/schemas"
)

// engine is one way of storing a batch of ProcessedEvent JSON values.
type engine interface {
	// write stores a batch. It returns once the batch is as durable as
	// the engine's mode promises.
	write(ctx context.Context, values [][]byte) error
	// close flushes everything and releases the engine; background work
	// (merges, checkpoints) the ingestion caused is finished or stopped.
	close() error
}

// Engine names accepted by -engines.
const (
	engineNull     = "null"       // corpus generation only, the baseline
	engineFlatten  = "flatten"    // generation + cls.Flatten: what any engine taking key/values pays first
	engineSQLite   = "sqlite"     // consumer/sink/local, today's store
	engineVL       = "vlogs"      // VictoriaLogs: every flattened key a field + _msg = the event JSON
	engineVLFields = "vlogs-lean" // VictoriaLogs: the flattened keys only, no _msg copy
	engineVLMsg    = "vlogs-msg"  // VictoriaLogs: _msg = the event JSON + only the SQLite store's columns as fields
)

// columnKeys are the keys the SQLite store has columns for (schema.go);
// the vlogs-msg layout keeps only these as fields.
var columnKeys = map[string]bool{
	"auditID": true, "stage": true, "level": true, "verb": true, "user.username": true, "user.groups": true,
	"objectRef.resource": true, "objectRef.subresource": true, "objectRef.namespace": true, "objectRef.name": true,
	"objectRef.apiGroup": true, "responseStatus.code": true, "sourceIPs": true, "userAgent": true,
	"requestReceivedTimestamp": true, "stageTimestamp": true, schemas.PipelineKey + ".receivedAt": true,
	schemas.PipelineKey + ".contentHash": true,
}

// Durability modes of the VictoriaLogs engines (-vl-sync).
const (
	// syncNone returns after MustAddRows: the rows sit in memory for up
	// to ~1 s (rows buffer) plus the flush interval (in-memory parts)
	// before they reach files. A crash loses them.
	syncNone = "none"
	// syncBatch makes every batch durable before write returns: the only
	// public way to force in-memory data into fsynced files is a
	// partition snapshot (DebugFlush + PartitionSnapshotMustCreate, which
	// flushes in-memory parts to file parts and fsyncs them), deleted
	// right after.
	syncBatch = "batch"
)

type nullEngine struct{}

func (nullEngine) write(context.Context, [][]byte) error { return nil }
func (nullEngine) close() error                          { return nil }

type flattenEngine struct{ n int }

func (e *flattenEngine) write(_ context.Context, values [][]byte) error {
	for _, v := range values {
		f, err := cls.Flatten(v, time.Time{})
		if err != nil {
			return fmt.Errorf("flatten: %w", err)
		}
		e.n += len(f.Contents)
	}
	return nil
}

func (e *flattenEngine) close() error { return nil }

type sqliteEngine struct{ s *local.Store }

func openSQLite(dir string) (*sqliteEngine, error) {
	s, err := local.Open(filepath.Join(dir, "events.db"), local.Options{})
	if err != nil {
		return nil, err
	}
	return &sqliteEngine{s: s}, nil
}

func (e *sqliteEngine) write(ctx context.Context, values [][]byte) error {
	res, err := e.s.Write(ctx, values)
	if err != nil {
		return err
	}
	if res.Inserted != len(values) {
		return fmt.Errorf("sqlite: inserted %d of %d (%d duplicates, %d invalid: %v)", res.Inserted, len(values), res.Duplicates, res.Invalid, res.InvalidValues)
	}
	return nil
}

func (e *sqliteEngine) close() error { return e.s.Close() }

// vlEngine writes into VictoriaLogs' storage (lib/logstorage), embedded.
// The stream is the cluster (few streams, as VictoriaLogs wants); every
// key cls.Flatten makes (the CLS sink's and the search's key names)
// becomes a field; with keepMsg the compact event JSON is _msg too, so
// the API can return the event as stored and `word` searches it.
type vlEngine struct {
	s       *logstorage.Storage
	sync    string
	keepMsg bool
	// onlyColumns keeps only columnKeys as fields (with keepMsg).
	onlyColumns bool
	fields      []logstorage.Field
}

func openVL(dir, sync string, keepMsg, onlyColumns bool) (*vlEngine, error) {
	if sync != syncNone && sync != syncBatch {
		return nil, fmt.Errorf("vlogs: sync mode %q: want %s or %s", sync, syncNone, syncBatch)
	}
	s := logstorage.MustOpenStorage(filepath.Join(dir, "vlogs"), &logstorage.StorageConfig{
		Retention:     10 * 365 * 24 * time.Hour,
		FlushInterval: 5 * time.Second, // VictoriaLogs' default -inmemoryDataFlushInterval
		// The corpus lies in the past: accept it.
		MaxBackfillAge: 10 * 365 * 24 * time.Hour,
	})
	return &vlEngine{s: s, sync: sync, keepMsg: keepMsg, onlyColumns: onlyColumns}, nil
}

func (e *vlEngine) write(_ context.Context, values [][]byte) error {
	lr := logstorage.GetLogRows(nil, nil, nil, nil, "-")
	defer logstorage.PutLogRows(lr)
	days := map[string]bool{}
	for _, v := range values {
		f, err := cls.Flatten(v, time.Time{})
		if err != nil {
			return fmt.Errorf("vlogs: flatten: %w", err)
		}
		fields := append(e.fields[:0], logstorage.Field{Name: schemas.PipelineKey + ".cluster", Value: f.Cluster})
		for _, kv := range f.Contents {
			if kv.Key == schemas.PipelineKey+".cluster" || e.onlyColumns && !columnKeys[kv.Key] {
				continue
			}
			fields = append(fields, logstorage.Field{Name: kv.Key, Value: kv.Value})
		}
		if e.keepMsg {
			fields = append(fields, logstorage.Field{Name: "_msg", Value: string(v)})
		}
		e.fields = fields
		ts := f.TimeMs * int64(time.Millisecond)
		lr.MustAdd(logstorage.TenantID{}, ts, fields, 1)
		days[time.Unix(0, ts).UTC().Format("20060102")] = true
	}
	if lr.RowsCount() != len(values) {
		return fmt.Errorf("vlogs: %d of %d rows accepted (see the storage's warnings)", lr.RowsCount(), len(values))
	}
	e.s.MustAddRows(lr)
	if e.sync == syncBatch {
		e.s.DebugFlush()
		for day := range days {
			for _, p := range e.s.PartitionSnapshotMustCreate(day) {
				if err := e.s.PartitionSnapshotDelete(p); err != nil {
					return fmt.Errorf("vlogs: delete sync snapshot: %w", err)
				}
			}
		}
	}
	return nil
}

// quiesce waits until no merge is running (at most limit), so that the
// CPU of the merges the ingestion caused is counted.
func (e *vlEngine) quiesce(limit time.Duration) {
	deadline := time.Now().Add(limit)
	e.s.DebugFlush()
	for time.Now().Before(deadline) {
		var st logstorage.StorageStats
		e.s.UpdateStats(&st)
		p := st.PartitionStats
		if p.ActiveInmemoryMerges+p.ActiveSmallMerges+p.ActiveBigMerges+p.IndexdbActiveInmemoryMerges == 0 && p.PendingRows == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *vlEngine) close() error {
	e.quiesce(2 * time.Minute)
	e.s.MustClose()
	return nil
}

func openEngine(name, dir, vlSync string) (engine, error) {
	switch name {
	case engineNull:
		return nullEngine{}, nil
	case engineFlatten:
		return &flattenEngine{}, nil
	case engineSQLite:
		return openSQLite(dir)
	case engineVL:
		return openVL(dir, vlSync, true, false)
	case engineVLFields:
		return openVL(dir, vlSync, false, false)
	case engineVLMsg:
		return openVL(dir, vlSync, true, true)
	}
	return nil, errors.New("unknown engine " + name + "; want one of " + strings.Join(allEngines, ", "))
}

var allEngines = []string{engineNull, engineFlatten, engineSQLite, engineVL, engineVLFields, engineVLMsg}
