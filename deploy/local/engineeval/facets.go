package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/cls"

	// The pure-Go SQLite driver the local store uses.
	_ "modernc.org/sqlite"
)

// facetsEngine is the narrow SQLite side table a hybrid store would keep
// for the `| SQL` stage next to VictoriaLogs: the columns the common
// analyses group and filter by (the local store's events_facets plus
// userAgent and name), one index on time, one fsynced transaction per
// batch (synchronous=FULL, as the local store). It flattens each event
// itself, so its cost includes one cls.Flatten that a hybrid would share
// with the VictoriaLogs write.
type facetsEngine struct {
	db *sql.DB
}

const facetsSchema = `CREATE TABLE facets (
	stage_ts INTEGER NOT NULL, cluster TEXT, verb TEXT, code INTEGER, resource TEXT,
	namespace TEXT, username TEXT, user_agent TEXT, name TEXT);
CREATE INDEX facets_time ON facets (stage_ts)`

func openFacets(dir string) (*facetsEngine, error) {
	dsn := "file:" + (&url.URL{Path: filepath.Join(dir, "facets.db")}).EscapedPath() + "?" + url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_txlock":       {"immediate"},
	}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("facets: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(facetsSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("facets: schema: %w", err)
	}
	return &facetsEngine{db: db}, nil
}

func (e *facetsEngine) write(ctx context.Context, values [][]byte) error {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("facets: begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, `INSERT INTO facets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("facets: prepare: %w", err)
	}
	defer st.Close()
	for _, v := range values {
		f, err := cls.Flatten(v, time.Time{})
		if err != nil {
			return fmt.Errorf("facets: flatten: %w", err)
		}
		var verb, resource, namespace, user, agent, name string
		var code int64
		for _, kv := range f.Contents {
			switch kv.Key {
			case "verb":
				verb = kv.Value
			case "objectRef.resource":
				resource = kv.Value
			case "objectRef.namespace":
				namespace = kv.Value
			case "objectRef.name":
				name = kv.Value
			case "user.username":
				user = kv.Value
			case "userAgent":
				agent = kv.Value
			case "responseStatus.code":
				code, _ = strconv.ParseInt(kv.Value, 10, 64)
			}
		}
		if _, err := st.ExecContext(ctx, f.TimeMs, f.Cluster, verb, code, resource, namespace, user, agent, name); err != nil {
			return fmt.Errorf("facets: insert %s/%s: %w", f.Cluster, f.AuditID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("facets: commit: %w", err)
	}
	return nil
}

func (e *facetsEngine) close() error { return e.db.Close() }
