package local_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// openStore opens a store in a fresh directory and closes it at the end of
// the test.
func openStore(tb testing.TB, opts local.Options) (*local.Store, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "events.db")
	s, err := local.Open(path, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, s.Close()) })
	return s, path
}

func TestWriteErrorCommitsNothing(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Write(ctx, localtest.Values(localtest.GKE(t)))
	require.Error(t, err)

	got, err := s.Query(context.Background(), local.Query{})
	require.NoError(t, err)
	require.Zero(t, got.Total)
}

func TestQueryReturnsStoredJSON(t *testing.T) {
	s, _ := openStore(t, local.Options{})
	ev := localtest.GKE(t)[0]
	pretty, err := json.MarshalIndent(ev.ProcessedEvent, "", "  ")
	require.NoError(t, err)
	_, err = s.Write(context.Background(), [][]byte{pretty})
	require.NoError(t, err)
	got, err := s.Query(context.Background(), local.Query{})
	require.NoError(t, err)
	require.Len(t, got.Events, 1)
	require.JSONEq(t, string(ev.JSON), string(got.Events[0]))
	require.NotContains(t, string(got.Events[0]), "\n", "stored compacted, one line")
}

func TestColumnsAndJSONForSQL(t *testing.T) {
	// The coming `| SQL` stage runs over these columns and json_extract;
	// check the values land where the field names say.
	s, path := openStore(t, local.Options{})
	_, err := s.Write(context.Background(), localtest.Values(localtest.GKE(t)))
	require.NoError(t, err)

	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var (
		user, verb, resource, name, apiGroup, sourceIP, groups, nameJSON string
		code, stageTS                                                    int64
	)
	err = db.QueryRow(`SELECT username, verb, resource, name, api_group, source_ip, user_groups,
		code, stage_ts, json_extract(event, '$.objectRef.name')
		FROM events WHERE audit_id = '75769369-6f53-4da5-883e-75a5c8b593fb'`).
		Scan(&user, &verb, &resource, &name, &apiGroup, &sourceIP, &groups, &code, &stageTS, &nameJSON)
	require.NoError(t, err)
	require.Equal(t, "mark.stemm@sysdig.com", user)
	require.Equal(t, "create", verb)
	require.Equal(t, "clusterrolebindings", resource)
	require.Equal(t, "evil-user-binding", name)
	require.Equal(t, "rbac.authorization.k8s.io", apiGroup)
	require.Equal(t, "73.170.242.20", sourceIP)
	require.Empty(t, groups)
	require.EqualValues(t, 201, code)
	require.Equal(t, time.Date(2020, 1, 7, 0, 40, 20, 502_000_000, time.UTC).UnixMilli(), stageTS)
	require.Equal(t, name, nameJSON)

	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.Equal(t, "wal", mode)
}

func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "events.db")
	events := localtest.All(t)

	s, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	_, err = s.Write(context.Background(), localtest.Values(events))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is safe twice")

	s, err = local.Open(path, local.Options{})
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Query(context.Background(), local.Query{Text: "evil-user-binding"})
	require.NoError(t, err)
	require.Equal(t, 1, got.Total, "full-text index survives too")
	res, err := s.Write(context.Background(), localtest.Values(events))
	require.NoError(t, err)
	require.Equal(t, len(events), res.Duplicates)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec("PRAGMA user_version = 99")
	require.NoError(t, err)
	require.NoError(t, db.Close())

	_, err = local.Open(path, local.Options{})
	require.ErrorContains(t, err, "schema version 99")
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s, _ := openStore(t, local.Options{Registerer: reg})
	v := localtest.GKE(t)[0].JSON
	_, err := s.Write(context.Background(), [][]byte{v, v, []byte("x")})
	require.NoError(t, err)
	_, err = s.Query(context.Background(), local.Query{})
	require.NoError(t, err)

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
	count, err := testutil.GatherAndCount(reg,
		"auditpipe_localstore_events_total", "auditpipe_localstore_write_duration_seconds")
	require.NoError(t, err)
	require.Equal(t, 4, count, "three outcomes and one histogram")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP auditpipe_localstore_events_total Events handed to the local store, by outcome (inserted, duplicate, invalid).
# TYPE auditpipe_localstore_events_total counter
auditpipe_localstore_events_total{outcome="duplicate"} 1
auditpipe_localstore_events_total{outcome="inserted"} 1
auditpipe_localstore_events_total{outcome="invalid"} 1
`), "auditpipe_localstore_events_total"))
}

func TestConcurrentQueryDuringWrite(t *testing.T) {
	s, _ := openStore(t, local.Options{ReadConns: 3})
	base := localtest.All(t)
	const batches = 8
	ctx := context.Background()

	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for b := range batches {
			res, err := s.Write(ctx, variants(t, base, b))
			if !assertNoError(t, err) {
				return
			}
			if res.Inserted != len(base) {
				t.Errorf("batch %d: inserted %d, want %d", b, res.Inserted, len(base))
			}
		}
	}()
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				q := local.Query{Limit: 10}
				if r == 1 {
					q.Text = "forbidden"
				}
				got, err := s.Query(ctx, q)
				if !assertNoError(t, err) {
					return
				}
				if got.Total < last {
					t.Errorf("reader %d: total went down from %d to %d", r, last, got.Total)
				}
				if len(got.Events) != min(10, got.Total) {
					t.Errorf("reader %d: %d events for total %d: page and total from different snapshots", r, len(got.Events), got.Total)
				}
				last = got.Total
				select {
				case <-done:
					return
				default:
				}
			}
		}()
	}
	wg.Wait()
	got, err := s.Query(ctx, local.Query{})
	require.NoError(t, err)
	require.Equal(t, batches*len(base), got.Total)
}

// assertNoError reports err from a goroutine other than the test's, where
// require's FailNow must not be called.
func assertNoError(tb testing.TB, err error) bool {
	tb.Helper()
	if err != nil {
		tb.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// variants returns copies of events with auditIDs made unique by n, as if
// the same requests happened again.
func variants(tb testing.TB, events []localtest.Event, n int) [][]byte {
	tb.Helper()
	out := make([][]byte, len(events))
	for i, e := range events {
		ev := e.ProcessedEvent
		ev.AuditID = fmt.Sprintf("%s-%d", ev.AuditID, n)
		b, err := json.Marshal(ev)
		if err != nil {
			tb.Errorf("marshal: %v", err)
		}
		out[i] = b
	}
	return out
}
