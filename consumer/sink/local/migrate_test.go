package local

import (
	"bytes"
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// A store written by main's binary (schema version 2: events_fts split words
// at '-' and indexed auditpipe's fields) opens, gets its words computed from
// the stored events, and answers with CLS's words.
func TestOpenMigratesAVersion2Store(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	for _, m := range migrations()[:2] {
		_, err := db.Exec(m)
		require.NoError(t, err)
	}
	_, err = db.Exec("PRAGMA user_version = 2")
	require.NoError(t, err)
	events := append(localtest.Falco(t), localtest.GKE(t)...)
	var buf bytes.Buffer
	nginxDeployment, stored := 0, 0
	for _, e := range events {
		r, err := decodeRow(e.JSON, &buf)
		require.NoError(t, err)
		res, err := db.Exec(version2InsertSQL, r.cluster, r.auditID, r.stage, r.level, r.verb, r.username, r.groups, r.resource,
			r.subresource, r.namespace, r.name, r.apiGroup, r.code, r.sourceIP, r.userAgent,
			r.requestReceived, r.stageTS, r.receivedAt, r.event)
		require.NoError(t, err)
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		id, err := res.LastInsertId()
		require.NoError(t, err)
		// The old index's text: words split at punctuation.
		_, err = db.Exec("INSERT INTO events_fts (rowid, text) VALUES (?, ?)", id, "old text")
		require.NoError(t, err)
		stored++
		if e.ObjectRef != nil && e.ObjectRef.Name == "nginx-deployment" {
			nginxDeployment++
		}
	}
	require.NoError(t, db.Close())
	require.NotZero(t, nginxDeployment)

	s, err := Open(path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	var version int
	require.NoError(t, s.writer.QueryRow("PRAGMA user_version").Scan(&version))
	require.Equal(t, len(migrations()), version)
	var old int
	require.NoError(t, s.writer.QueryRow("SELECT count(*) FROM sqlite_master WHERE name = 'events_fts'").Scan(&old))
	require.Zero(t, old)

	count := func(q string) int {
		pq, err := cql.Parse(q)
		require.NoError(t, err)
		res, err := s.Search(context.Background(), SearchRequest{Query: pq})
		require.NoError(t, err)
		return res.Total
	}
	// Full text through the backfilled words, with CLS's words.
	require.Equal(t, nginxDeployment, count(`nginx-deployment AND objectRef.name:nginx-deployment`))
	require.NotZero(t, count(`requestObject:privileged`))
	require.Zero(t, count(`audit.raw`), "auditpipe.origin.topic is not full text")
	require.Equal(t, stored, count(`auditpipe.origin.topic:audit.raw`))
}

// version2InsertSQL is the insert of schema version 2 (main before the
// content-hash identity of migration 3), to write a store as it was.
const version2InsertSQL = `INSERT INTO events (
	cluster, audit_id, stage, level, verb, username, user_groups, resource,
	subresource, namespace, name, api_group, code, source_ip, user_agent,
	request_received, stage_ts, received_at, event
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (cluster, audit_id, stage) DO NOTHING`
