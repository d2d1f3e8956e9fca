package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
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
	engineFacets   = "facets"     // a narrow SQLite side table for `| SQL` (facets.go)
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
	// syncBatch makes every batch durable before write returns (see
	// vlEngine.sync); "every=N" does so every N batches, as a consumer
	// committing its offsets after each checkpoint would.
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
	keepMsg bool
	// onlyColumns keeps only columnKeys as fields (with keepMsg).
	onlyColumns bool
	// syncEvery makes the data durable every syncEvery batches (0: never,
	// VictoriaLogs' own flushing only).
	syncEvery int
	batches   int
	days      map[string]bool // partitions written since the last sync
	fields    []logstorage.Field
}

// parseSync reads -vl-sync: none, batch, or every=N (batches).
func parseSync(mode string) (int, error) {
	switch mode {
	case syncNone:
		return 0, nil
	case syncBatch:
		return 1, nil
	}
	if n, ok := strings.CutPrefix(mode, "every="); ok {
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("vlogs: sync mode %q: want %s, %s or every=N (batches)", mode, syncNone, syncBatch)
}

func openVL(dir, sync string, keepMsg, onlyColumns bool) (*vlEngine, error) {
	every, err := parseSync(sync)
	if err != nil {
		return nil, err
	}
	s := logstorage.MustOpenStorage(filepath.Join(dir, "vlogs"), &logstorage.StorageConfig{
		Retention:     10 * 365 * 24 * time.Hour,
		FlushInterval: 5 * time.Second, // VictoriaLogs' default -inmemoryDataFlushInterval
		// The corpus lies in the past: accept it.
		MaxBackfillAge: 10 * 365 * 24 * time.Hour,
	})
	return &vlEngine{s: s, keepMsg: keepMsg, onlyColumns: onlyColumns, syncEvery: every, days: map[string]bool{}}, nil
}

func (e *vlEngine) write(_ context.Context, values [][]byte) error {
	lr := logstorage.GetLogRows(nil, nil, nil, nil, "-")
	defer logstorage.PutLogRows(lr)
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
		e.days[time.Unix(0, ts).UTC().Format("20060102")] = true
	}
	if lr.RowsCount() != len(values) {
		return fmt.Errorf("vlogs: %d of %d rows accepted (see the storage's warnings)", lr.RowsCount(), len(values))
	}
	e.s.MustAddRows(lr)
	e.batches++
	if e.syncEvery > 0 && e.batches%e.syncEvery == 0 {
		return e.sync()
	}
	return nil
}

// sync makes everything added so far durable: DebugFlush turns the
// buffered rows into in-memory parts, and a snapshot of each partition
// written since the last sync flushes its in-memory parts to fsynced file
// parts (lib/logstorage has no other public flush-to-disk call); the
// snapshot itself (hard links) is deleted at once.
func (e *vlEngine) sync() error {
	e.s.DebugFlush()
	for day := range e.days {
		for _, p := range e.s.PartitionSnapshotMustCreate(day) {
			if err := e.s.PartitionSnapshotDelete(p); err != nil {
				return fmt.Errorf("vlogs: delete sync snapshot: %w", err)
			}
		}
	}
	clear(e.days)
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
	case engineFacets:
		return openFacets(dir)
	}
	return nil, errors.New("unknown engine " + name + "; want one of " + strings.Join(allEngines, ", "))
}

var allEngines = []string{engineNull, engineFlatten, engineSQLite, engineVL, engineVLFields, engineVLMsg, engineFacets}
