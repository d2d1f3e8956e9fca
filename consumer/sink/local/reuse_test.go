package local_test

import (
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// Decision 0012: the identity of an event is (cluster, auditID, stage,
// content hash). The store treats the hash as an opaque string; the
// processor computes it (processor/pipeline/identity.go).

func reusedOf(tb testing.TB, b []byte) bool {
	tb.Helper()
	var pe schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(b, &pe))
	return pe.Pipeline.AuditIDReused
}

// attack is a harmless request and a malicious one under the same
// cluster, auditID and stage, as a client sending its own Audit-ID header
// produces them.
func attack(tb testing.TB) (harmless, malicious []byte) {
	base := localtest.GKE(tb)[0]
	harmless = localtest.WithHash(tb, base, strings.Repeat("a", 64), nil)
	malicious = localtest.WithHash(tb, base, strings.Repeat("b", 64), func(pe *schemas.ProcessedEvent) {
		pe.Verb = "delete"
		pe.ObjectRef = &schemas.ObjectReference{Resource: "secrets", Namespace: "kube-system", Name: "admin-token", APIVersion: "v1"}
		pe.User.Username = "mallory"
	})
	return harmless, malicious
}

func TestWriteKeepsAReusedAuditID(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewPedanticRegistry()
	s, _ := openStore(t, local.Options{Registerer: reg})
	harmless, malicious := attack(t)

	res, err := s.Write(ctx, [][]byte{harmless})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 1}, res)
	// The malicious event, and a retransmission of the harmless one.
	res, err = s.Write(ctx, [][]byte{malicious, harmless})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 1, Reused: 1, Duplicates: 1}, res)
	// A redelivery of that batch changes nothing.
	res, err = s.Write(ctx, [][]byte{malicious, harmless})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Duplicates: 2}, res)

	got := searchAll(t, s, local.SearchRequest{}, "*", 1) // one per page: the two share their sort key but for the tie-breaker
	require.Len(t, got, 2)
	res2, err := search(t, s, local.SearchRequest{}, "*")
	require.NoError(t, err)
	require.Len(t, res2.Events, 2)
	var first, second json.RawMessage
	for _, e := range res2.Events {
		if reusedOf(t, e) {
			second = e
		} else {
			first = e
		}
	}
	require.NotNil(t, first, "the event stored first is not marked")
	require.NotNil(t, second, "the later, different event is marked")
	require.Equal(t, localtest.AsMap(t, harmless), localtest.AsMap(t, first), "the first event is stored as written")
	want := localtest.AsMap(t, malicious)
	want[schemas.PipelineKey].(map[string]any)["auditIDReused"] = true
	require.Equal(t, want, localtest.AsMap(t, second), "the second event is stored as written, plus the marker")

	// Search finds the marked one by the field, and only it.
	found, err := search(t, s, local.SearchRequest{}, "auditpipe.auditIDReused:true")
	require.NoError(t, err)
	require.Equal(t, 1, found.Total)
	require.Equal(t, "mallory", keyUser(t, found.Events[0]))
	found, err = search(t, s, local.SearchRequest{}, "NOT auditpipe.auditIDReused:true")
	require.NoError(t, err)
	require.Equal(t, 1, found.Total)
	rows, err := search(t, s, local.SearchRequest{}, "* | SELECT auditID, count(*) AS n, count(DISTINCT \"auditpipe.contentHash\") AS contents GROUP BY auditID HAVING contents > 1")
	require.NoError(t, err)
	require.Len(t, rows.Rows, 1, "the reuse is found by grouping on the identity too")
	require.Equal(t, []any{localtest.KeyOf(t, harmless).AuditID, int64(2), int64(2)}, rows.Rows[0])

	require.Equal(t, 1.0, testutil.ToFloat64(counter(t, reg, "auditpipe_localstore_auditid_reused_total")))
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	// A third request under the same id is kept and marked too.
	third := localtest.WithHash(t, localtest.GKE(t)[0], strings.Repeat("c", 64), func(pe *schemas.ProcessedEvent) { pe.Verb = "patch" })
	res, err = s.Write(ctx, [][]byte{third})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 1, Reused: 1}, res)
}

func keyUser(tb testing.TB, b []byte) string {
	var pe schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(b, &pe))
	return pe.User.Username
}

// counter finds a metric by name in reg, for ToFloat64.
func counter(tb testing.TB, reg *prometheus.Registry, name string) prometheus.Collector {
	tb.Helper()
	mfs, err := reg.Gather()
	require.NoError(tb, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "copy"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	tb.Fatalf("no metric %s", name)
	return nil
}

// TestWriteEventsWithoutHash: events stored before decision 0012, or from
// a processor that predates it, have no hash. They are compared by the
// fields the pipeline never changes: equal is one event (a retransmission
// across the upgrade), a difference is a reused auditID.
func TestWriteEventsWithoutHash(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, local.Options{})
	base := localtest.GKE(t)[0]
	unhashed := base.JSON
	res, err := s.Write(ctx, [][]byte{unhashed})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 1}, res)

	sameHashed := localtest.WithHash(t, base, strings.Repeat("e", 64), nil)
	otherUnhashed := localtest.WithHash(t, base, "", func(pe *schemas.ProcessedEvent) { pe.User.Username = "mallory" })
	otherHashed := localtest.WithHash(t, base, strings.Repeat("f", 64), func(pe *schemas.ProcessedEvent) { pe.SourceIPs = []string{"203.0.113.9"} })
	res, err = s.Write(ctx, [][]byte{sameHashed, unhashed, otherUnhashed, otherHashed, otherUnhashed, otherHashed})
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 2, Reused: 2, Duplicates: 4}, res)
	found, err := search(t, s, local.SearchRequest{}, "auditpipe.auditIDReused:true")
	require.NoError(t, err)
	require.Equal(t, 2, found.Total)
}

// TestOpenMigratesMainSchema opens a store file written by the store of
// schema version 2 (before decision 0012) and keeps using it.
//
// testdata/schema-v2-falco.db.gz was written by the code at commit
// 6f2f36d: local.Open on a new file, then one Write of
// localtest.Values(localtest.Falco(t)) (49 inserted, 2 duplicates), Close.
func TestOpenMigratesMainSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "events.db")
	gz, err := os.Open("testdata/schema-v2-falco.db.gz")
	require.NoError(t, err)
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	require.NoError(t, err)
	out, err := os.Create(path)
	require.NoError(t, err)
	_, err = io.Copy(out, zr)
	require.NoError(t, err)
	require.NoError(t, out.Close())

	version := func() int {
		db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
		require.NoError(t, err)
		defer db.Close()
		var v int
		require.NoError(t, db.QueryRow("PRAGMA user_version").Scan(&v))
		return v
	}
	require.Equal(t, 2, version())

	s, err := local.Open(path, local.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Equal(t, 5, version(), "every migration applied: the identity (3), CLS words (4), facets (5)")

	// The old store kept the first of each (cluster, auditID, stage).
	falco := localtest.Falco(t)
	firsts := map[localtest.Key]localtest.Event{}
	var later []localtest.Event
	for _, e := range falco {
		k := localtest.Key{Cluster: e.Pipeline.Cluster, AuditID: e.AuditID, Stage: e.Stage}
		if _, ok := firsts[k]; ok {
			later = append(later, e)
			continue
		}
		firsts[k] = e
	}
	require.Len(t, firsts, 49)
	require.Len(t, later, 2)

	all := searchAll(t, s, local.SearchRequest{}, "*", 20)
	require.Len(t, all, len(firsts), "every migrated row is there")
	// Full text still finds rows by their old rowids.
	for _, e := range firsts {
		found, err := search(t, s, local.SearchRequest{}, `auditID:"`+e.AuditID+`" AND "`+e.User.Username+`"`)
		require.NoError(t, err)
		require.GreaterOrEqual(t, found.Total, 1, "%s by %s", e.AuditID, e.User.Username)
	}

	// Everything again, as a new processor would send it after the
	// upgrade (with hashes): the old rows have none and are compared by
	// their fields. The two later fixtures that the old store dropped:
	// one differs only in its request body (the fields agree: counted as
	// the same event, the limit of rows without a hash), the other is
	// another user's request under the same auditID: kept and marked.
	values := make([][]byte, 0, len(falco))
	for i, e := range falco {
		values = append(values, localtest.WithHash(t, e, strings.Repeat("0", 60)+string(rune('a'+i%26))+"000", nil))
	}
	res, err := s.Write(ctx, values)
	require.NoError(t, err)
	require.Equal(t, local.WriteResult{Inserted: 1, Reused: 1, Duplicates: len(falco) - 1}, res)
	found, err := search(t, s, local.SearchRequest{}, "auditpipe.auditIDReused:true")
	require.NoError(t, err)
	require.Equal(t, 1, found.Total)
	var pe schemas.ProcessedEvent
	require.NoError(t, json.Unmarshal(found.Events[0], &pe))
	require.Equal(t, "some-user", pe.User.Username)
	require.Equal(t, "841d3e6d-90d2-43df-8da4-684738bee3d5", pe.AuditID)
}
