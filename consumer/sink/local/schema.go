package local

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations returns the schema migrations, applied in order; the schema
// version stored in PRAGMA user_version is the number of migrations applied.
// Never edit a released migration: append a new one.
//
// Design notes for migration 1:
//   - events.id is an INTEGER PRIMARY KEY (a rowid alias) and the natural key
//     (cluster, audit_id, stage) is a UNIQUE constraint. A table whose
//     PRIMARY KEY is not an INTEGER PRIMARY KEY still has a rowid, but VACUUM
//     may renumber it, and the FTS index refers to events by rowid. The
//     UNIQUE constraint gives exactly the idempotency of a composite primary
//     key (ON CONFLICT DO NOTHING fires on it) and its index serves lookups
//     by cluster.
//   - Column names are the snake_case of the audit fields so the coming
//     `| SQL` stage can map CLS field names (objectRef.resource) onto them;
//     anything without a column is reachable with json_extract(event, '$.x').
//   - Times are integer unix milliseconds (like CLS's __TIMESTAMP__), NULL
//     when the event had none.
//   - events_time is the full result order, so an unfiltered "newest
//     first" page is an index walk with no sort. The other secondary indexes
//     end in stage_ts, so a filter plus "newest first" only sorts ties.
//     Only the fields the search API filters on are indexed: each index
//     costs write throughput. Add more in a new migration when the query
//     language needs them.
//   - events_fts is a contentless FTS5 table (content is the empty string):
//     it stores only the inverted index, not a second copy of the text. The text is a rendition
//     of the stored JSON, which can be recomputed at any time, and results
//     are returned from events.event, so snippet()/highlight() (the only
//     things external content would add) are not needed. contentless_delete
//     keeps retention (DELETE by age) possible.
func migrations() []string {
	return []string{
		`CREATE TABLE events (
		id               INTEGER PRIMARY KEY,
		cluster          TEXT    NOT NULL,
		audit_id         TEXT    NOT NULL,
		stage            TEXT    NOT NULL,
		level            TEXT    NOT NULL,
		verb             TEXT    NOT NULL,
		username         TEXT    NOT NULL,
		user_groups      TEXT    NOT NULL, -- groups joined by a newline
		resource         TEXT    NOT NULL,
		subresource      TEXT    NOT NULL,
		namespace        TEXT    NOT NULL,
		name             TEXT    NOT NULL,
		api_group        TEXT    NOT NULL,
		code             INTEGER,          -- responseStatus.code, NULL if absent
		source_ip        TEXT    NOT NULL, -- sourceIPs[0]
		user_agent       TEXT    NOT NULL,
		request_received INTEGER,          -- requestReceivedTimestamp, unix ms
		stage_ts         INTEGER,          -- stageTimestamp, unix ms: the time axis
		received_at      INTEGER,          -- auditpipe.receivedAt, unix ms
		event            TEXT    NOT NULL, -- the ProcessedEvent JSON, compacted
		UNIQUE (cluster, audit_id, stage)
	);
	CREATE INDEX events_time ON events (stage_ts DESC, cluster, audit_id, stage);
	CREATE INDEX events_cluster_ts ON events (cluster, stage_ts);
	CREATE INDEX events_verb_ts ON events (verb, stage_ts);
	CREATE INDEX events_username_ts ON events (username, stage_ts);
	CREATE INDEX events_resource_ts ON events (resource, stage_ts);
	CREATE INDEX events_namespace_ts ON events (namespace, stage_ts);
	CREATE INDEX events_audit_id ON events (audit_id);
	CREATE VIRTUAL TABLE events_fts USING fts5(
		text,
		content = '',
		contentless_delete = 1,
		tokenize = 'unicode61 remove_diacritics 2'
	);`,
		// Migration 2 (search, ADR 0006): the CLS query language matches
		// text fields (user.username, objectRef.name, userAgent) by word.
		// The search walks the distinct values of such a column through
		// its index (a loose index scan: one seek per distinct value),
		// matches the few values, then seeks the events by value and
		// time. username already has an index; these add the other two.
		`CREATE INDEX events_name_ts ON events (name, stage_ts);
	CREATE INDEX events_user_agent_ts ON events (user_agent, stage_ts);`,
		// Migration 3 (decision 0012): the identity of an event is
		// (cluster, auditID, stage, content hash). A client can reuse an
		// auditID (the apiserver takes it from the Audit-ID header), so a
		// second event under the same id with other content is kept.
		// SQLite cannot drop a UNIQUE constraint, so the table is rebuilt
		// (a copy of every row, once; rowids are kept, so events_fts stays
		// valid) and its indexes are created again. Rows written before
		// have content_hash NULL (unknown; a UNIQUE constraint never fires
		// on NULL), and write.go compares them by their columns instead.
		`CREATE TABLE events_v3 (
		id               INTEGER PRIMARY KEY,
		cluster          TEXT    NOT NULL,
		audit_id         TEXT    NOT NULL,
		stage            TEXT    NOT NULL,
		level            TEXT    NOT NULL,
		verb             TEXT    NOT NULL,
		username         TEXT    NOT NULL,
		user_groups      TEXT    NOT NULL,
		resource         TEXT    NOT NULL,
		subresource      TEXT    NOT NULL,
		namespace        TEXT    NOT NULL,
		name             TEXT    NOT NULL,
		api_group        TEXT    NOT NULL,
		code             INTEGER,
		source_ip        TEXT    NOT NULL,
		user_agent       TEXT    NOT NULL,
		request_received INTEGER,
		stage_ts         INTEGER,
		received_at      INTEGER,
		event            TEXT    NOT NULL,
		content_hash     TEXT,             -- auditpipe.contentHash, NULL when unknown
		UNIQUE (cluster, audit_id, stage, content_hash)
	);
	INSERT INTO events_v3 (id, cluster, audit_id, stage, level, verb, username, user_groups,
		resource, subresource, namespace, name, api_group, code, source_ip, user_agent,
		request_received, stage_ts, received_at, event, content_hash)
	SELECT id, cluster, audit_id, stage, level, verb, username, user_groups,
		resource, subresource, namespace, name, api_group, code, source_ip, user_agent,
		request_received, stage_ts, received_at, event,
		NULLIF(json_extract(event, '$.auditpipe.contentHash'), '')
	FROM events;
	DROP TABLE events;
	ALTER TABLE events_v3 RENAME TO events;
	CREATE INDEX events_time ON events (stage_ts DESC, cluster, audit_id, stage);
	CREATE INDEX events_cluster_ts ON events (cluster, stage_ts);
	CREATE INDEX events_verb_ts ON events (verb, stage_ts);
	CREATE INDEX events_username_ts ON events (username, stage_ts);
	CREATE INDEX events_resource_ts ON events (resource, stage_ts);
	CREATE INDEX events_namespace_ts ON events (namespace, stage_ts);
	CREATE INDEX events_audit_id ON events (audit_id);
	CREATE INDEX events_name_ts ON events (name, stage_ts);
	CREATE INDEX events_user_agent_ts ON events (user_agent, stage_ts);`,
		// Migration 4 (search, ADR 0006): CLS's words. events_fts split
		// words at '-', '.' and '_' (FTS5's unicode61) where CLS does not,
		// and indexed auditpipe's own fields as full text. events_words
		// holds CLS's words, encoded so that FTS5 keeps them whole
		// (text.go): text = the full text, kv = key-scoped words. Its
		// rows are computed in Go: migrate backfills them (reindexWords).
		`DROP TABLE events_fts;
	CREATE VIRTUAL TABLE events_words USING fts5(
		text,
		kv,
		content = '',
		contentless_delete = 1,
		tokenize = 'unicode61 remove_diacritics 0'
	);`,
		// Migration 5 (search, ADR 0006): a narrow copy of the columns
		// dashboards group by, in time order. An analysis over a week
		// (GROUP BY verb, code) read every row with its JSON, one page
		// per few events; this index answers it from ~80 bytes per event,
		// and a time range is a range of it.
		`CREATE INDEX events_facets ON events (stage_ts, cluster, verb, code, resource, namespace, username);`,
	}
}

// wordsMigration is the migration that creates events_words: a store
// older than it gets its rows computed after the SQL.
const wordsMigration = 4

// reindexWords fills events_words from the stored events, in the migration
// transaction (a one-time cost when opening a store written by an older
// binary: about as long as writing the events took).
func reindexWords(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "SELECT id, event FROM events")
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	ins, err := tx.PrepareContext(ctx, insertTextSQL)
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer ins.Close()
	// Reading and inserting on one connection: SQLite allows writes to
	// another table while a SELECT on events is open.
	var text, kv []byte
	for rows.Next() {
		var id int64
		var ev string
		if err := rows.Scan(&id, &ev); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		text, kv, err = indexWords([]byte(ev), text[:0], kv[:0])
		if err != nil {
			return fmt.Errorf("event %d: %w", id, err)
		}
		if _, err := ins.ExecContext(ctx, id, string(text), string(kv)); err != nil {
			return fmt.Errorf("index event %d: %w", id, err)
		}
	}
	return rows.Err()
}

// migrate brings the schema to the newest version in one IMMEDIATE
// transaction (the writer's DSN sets _txlock=immediate), so two processes
// opening a fresh file cannot both create it.
func migrate(ctx context.Context, db *sql.DB) (version int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	all := migrations()
	if version > len(all) {
		return version, fmt.Errorf("schema version %d is newer than this binary supports (%d): refusing to touch it", version, len(all))
	}
	for i := version; i < len(all); i++ {
		if _, err := tx.ExecContext(ctx, all[i]); err != nil {
			return version, fmt.Errorf("apply migration %d: %w", i+1, err)
		}
		if i+1 == wordsMigration && version > 0 {
			if err := reindexWords(ctx, tx); err != nil {
				return version, fmt.Errorf("apply migration %d: %w", i+1, err)
			}
		}
	}
	if version < len(all) {
		// PRAGMA takes no bound parameters; the value is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(all))); err != nil {
			return version, fmt.Errorf("set schema version: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return version, fmt.Errorf("commit migration: %w", err)
	}
	return len(all), nil
}
