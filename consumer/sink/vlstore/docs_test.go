package vlstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// TestDocsTornTailAndChecksum: a block torn by a crash at the end of a
// file is garbage that later blocks follow (the references before and
// after it resolve); a damaged block is an error, not a wrong event.
func TestDocsTornTailAndChecksum(t *testing.T) {
	dir := t.TempDir()
	d, err := openDocs(dir)
	require.NoError(t, err)
	const day = "20261203"
	first, err := d.appendBlock(day, []string{`{"a":1}`, `{"b":2}`})
	require.NoError(t, err)
	require.NoError(t, d.close())

	// A crash in the middle of the next block's write.
	path := filepath.Join(dir, docsDir, day)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte(blockMagic + "\xff\xff\x00\x00partial"))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	d, err = openDocs(dir)
	require.NoError(t, err)
	defer d.close()
	later, err := d.appendBlock(day, []string{`{"c":3}`})
	require.NoError(t, err)
	for ref, want := range map[docRef]string{first[0]: `{"a":1}`, first[1]: `{"b":2}`, later[0]: `{"c":3}`} {
		got, err := d.get(day, ref)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	_, err = d.get(day, first[1]+1)
	require.ErrorContains(t, err, "holds 2 events")

	// One byte of the first block's data flipped.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	raw[blockHeaderLen+2] ^= 0xff
	require.NoError(t, os.WriteFile(path, raw, 0o640))
	d.blocks = newBlockCache(4) // what a restart reads
	_, err = d.get(day, first[0])
	require.ErrorContains(t, err, "checksum mismatch")
}

// TestDocsFollowPartitions: retention that drops a day's partition drops
// its event file; a file whose partition is gone (a crash in between) is
// removed at Open; the used bytes count the files.
func TestDocsFollowPartitions(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, eventstore.Options{}, Config{})
	// Noon: the events of three days, and retention by age (whole days)
	// dropping the oldest.
	now := time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)
	var values [][]byte
	for day := range 3 {
		for i := range 10 {
			values = append(values, eventgen.Event("c1", fmt.Sprintf("d%d-%d", day, i), 800, now.Add(-time.Duration(day)*24*time.Hour)))
		}
	}
	res, err := s.Write(context.Background(), values)
	require.NoError(t, err)
	require.Equal(t, 30, res.Inserted)
	files := func() []string {
		entries, err := os.ReadDir(filepath.Join(dir, "vlogs", docsDir))
		require.NoError(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	require.Len(t, files(), 3)
	used, err := s.UsedBytes(context.Background())
	require.NoError(t, err)
	require.Greater(t, used, s.docs.bytes())

	n := pruneAll(t, s, eventstore.Retention{MaxAge: 25 * time.Hour}, now)
	require.Equal(t, 10, n, "the oldest day")
	require.NotContains(t, files(), now.Add(-48*time.Hour).Format(partitionName))
	require.Len(t, files(), 2)
	require.NoError(t, s.Close())

	orphan := filepath.Join(dir, "vlogs", docsDir, "19990101")
	require.NoError(t, os.WriteFile(orphan, []byte("x"), 0o640))
	s = openTest(t, dir, eventstore.Options{}, Config{})
	defer s.Close()
	require.NoFileExists(t, orphan)
	require.Len(t, files(), 2)
	require.Len(t, stored(t, s, "*"), 20)
	require.True(t, slices.IsSorted(files()))
}

// TestReadsRowsWrittenWithMsg: a store written before the event files
// (the event as the row's _msg, no auditpipe:doc) still answers with its
// events.
func TestReadsRowsWrittenWithMsg(t *testing.T) {
	s := openTest(t, t.TempDir(), eventstore.Options{}, Config{})
	defer s.Close()
	ts := time.Now().Add(-time.Minute).UTC()
	event := string(eventgen.Event("c1", "legacy-1", 600, ts))
	lr := logstorage.GetLogRows(nil, nil, nil, nil, "")
	defer logstorage.PutLogRows(lr)
	lr.MustAdd(logstorage.TenantID{}, ts.UnixNano(), []logstorage.Field{
		{Name: keyCluster, Value: "c1"}, {Name: "auditID", Value: "legacy-1"}, {Name: "stage", Value: "ResponseComplete"},
		{Name: keyStageTS, Value: ts.Format(time.RFC3339Nano)}, {Name: "_msg", Value: event},
	}, 1)
	s.vl.MustAddRows(lr)
	s.vl.DebugFlush()
	res, err := s.Query(context.Background(), eventstore.Query{Cluster: "c1"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Total)
	require.JSONEq(t, event, string(res.Events[0]))
}
