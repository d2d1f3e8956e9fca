package migrate_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/migrate"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
	"github.com/auditpipe/auditpipe/schemas"
)

// allEvents is every event of s, as stored, sorted (the two engines order
// the copies of a reused auditID differently).
func allEvents(t *testing.T, s eventstore.Store) []string {
	t.Helper()
	res, err := s.Query(context.Background(), eventstore.Query{Limit: eventstore.MaxLimit})
	require.NoError(t, err)
	require.Equal(t, len(res.Events), res.Total, "one page holds them all")
	out := make([]string, len(res.Events))
	for i, e := range res.Events {
		out[i] = string(e)
	}
	slices.Sort(out)
	return out
}

// TestMigrateSQLiteToVictoriaLogs: every event of a SQLite store arrives
// in a VictoriaLogs store byte for byte, a reused auditID's marked copy
// included; a second run only counts duplicates; an event the
// destination cannot hold is reported, not dropped silently; a run
// resumed from a reported position goes on from there.
func TestMigrateSQLiteToVictoriaLogs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src, err := local.Open(filepath.Join(dir, "events.db"), local.Options{})
	require.NoError(t, err)
	defer src.Close()

	fixtures := localtest.All(t)
	values := localtest.Values(localtest.Raw(fixtures))
	res, err := src.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, len(values), res.Inserted)
	// A different event under a stored identity: stored marked.
	reused := localtest.WithHash(t, fixtures[0], "other-content", func(e *schemas.ProcessedEvent) { e.Verb = "delete" })
	res, err = src.Write(ctx, [][]byte{reused})
	require.NoError(t, err)
	require.Equal(t, 1, res.Reused)
	// An event over VictoriaLogs' 2 MB row limit: SQLite keeps it.
	huge := localtest.WithHash(t, fixtures[1], "huge", func(e *schemas.ProcessedEvent) {
		e.AuditID = "huge-event"
		e.RequestObject = json.RawMessage(`{"data":"` + strings.Repeat("x", 3<<20) + `"}`)
	})
	res, err = src.Write(ctx, [][]byte{huge})
	require.NoError(t, err)
	require.Equal(t, 1, res.Inserted)
	want := allEvents(t, src)
	require.Len(t, want, len(values)+2)

	dst, err := vlstore.Open(filepath.Join(dir, "vlogs"), eventstore.Options{}, vlstore.Config{DeferSync: true})
	require.NoError(t, err)
	defer dst.Close()
	var reports []migrate.Progress
	p, err := migrate.Run(ctx, src, dst, migrate.Options{BatchSize: 7, ReportEvery: time.Nanosecond,
		Report: func(p migrate.Progress) { reports = append(reports, p) }})
	require.ErrorIs(t, err, migrate.ErrNotStored)
	require.Contains(t, err.Error(), "1 of")
	require.Equal(t, int64(len(want)), p.Total)
	require.Equal(t, int64(len(want)), p.Read)
	require.Equal(t, int64(len(want)-1), p.Inserted)
	require.Equal(t, int64(1), p.Reused)
	require.Equal(t, int64(1), p.Invalid)
	require.Contains(t, p.FirstInvalid, "refused by VictoriaLogs")
	require.True(t, p.Done)
	require.Greater(t, len(reports), 10, "a report per page of 7")

	got := allEvents(t, dst)
	wantStored := slices.DeleteFunc(slices.Clone(want), func(e string) bool { return strings.Contains(e, `"huge-event"`) })
	require.Equal(t, wantStored, got, "the same events, byte for byte")

	// Again: nothing new.
	p, err = migrate.Run(ctx, src, dst, migrate.Options{})
	require.ErrorIs(t, err, migrate.ErrNotStored)
	require.Equal(t, int64(len(want)-1), p.Duplicates)
	require.Zero(t, p.Inserted)

	// Resumed from a position reported halfway: only what follows it.
	mid := reports[len(reports)/2]
	p, err = migrate.Run(ctx, src, dst, migrate.Options{After: mid.Position})
	require.ErrorIs(t, err, migrate.ErrNotStored, "the huge event comes after the middle")
	require.Equal(t, int64(len(want))-mid.Read, p.Read)
	require.Equal(t, wantStored, allEvents(t, dst))
}
