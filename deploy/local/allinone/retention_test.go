package allinone

import (
	"bufio"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/config"
)

// eventAt is an apiserver event stamped at ts with a request body of about
// bodyBytes, kept by the e2e policy at RequestResponse.
func eventAt(auditID string, ts time.Time, bodyBytes int) string {
	at := ts.UTC().Format("2006-01-02T15:04:05.000000Z")
	body := `{"kind":"ConfigMap","apiVersion":"v1","data":{"v":"` + strings.Repeat("x", bodyBytes) + `"}}`
	return `{"level":"RequestResponse","auditID":"` + auditID + `","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/default/configmaps","verb":"create",` +
		`"user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],` +
		`"objectRef":{"resource":"configmaps","namespace":"default","name":"cm","apiVersion":"v1"},` +
		`"responseStatus":{"metadata":{},"code":201},"requestObject":` + body + `,` +
		`"requestReceivedTimestamp":"` + at + `","stageTimestamp":"` + at + `"}`
}

// metricValue reads one series from /metrics (-1 when absent).
func metricValue(t *testing.T, api, series string) float64 {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return -1
}

// fileUsedBytes measures the store from outside, through a separate
// read-only connection: its pages minus its free pages (what SQLite reads,
// the WAL's newer pages included), and the bytes on disk (file and WAL).
func fileUsedBytes(t *testing.T, path string) (used, onDisk int64) {
	t.Helper()
	for _, f := range []string{path, path + "-wal"} {
		if st, err := os.Stat(f); err == nil {
			onDisk += st.Size()
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var pages, free, pageSize int64
	require.NoError(t, db.QueryRow("PRAGMA page_count").Scan(&pages))
	require.NoError(t, db.QueryRow("PRAGMA freelist_count").Scan(&free))
	require.NoError(t, db.QueryRow("PRAGMA page_size").Scan(&pageSize))
	return (pages - free) * pageSize, onDisk
}

// waitStoredOrPrunedBySize waits until each of cluster's n events is
// either stored or was pruned by size, and returns how many are stored:
// some, not all. The counter is read first: an event pruned between the
// two reads is then counted in neither (the wait goes on) rather than in
// both (it would end before every event arrived).
func waitStoredOrPrunedBySize(t *testing.T, api, cluster string, n int) int {
	t.Helper()
	var stored int
	require.Eventually(t, func() bool {
		pruned := metricValue(t, api, `auditpipe_localstore_pruned_events_total{reason="size"}`)
		stored = queryEvents(t, api, url.Values{"cluster": {cluster}}).Total
		return float64(stored)+pruned >= float64(n)
	}, 2*time.Minute, 200*time.Millisecond)
	require.Positive(t, stored)
	require.Less(t, stored, n, "size retention deleted some")
	return stored
}

// TestRetentionInAllInOne: the all-in-one accepts retention keys in its
// config file and runs the store's retention: events older than maxAge go,
// the store is cut back to maxBytes oldest first, and
// auditpipe_localstore_used_bytes is what the file holds. On SQLite: the
// store is read back through a connection of its own, and used_bytes is
// its pages in use.
func TestRetentionInAllInOne(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store.Engine = eventstore.EngineSQLite
	file := filepath.Join(t.TempDir(), "auditpipe.yaml")
	require.NoError(t, os.WriteFile(file, []byte("retention:\n  maxAge: 1h\n  maxBytes: 1048576\n  interval: 200ms\n"), 0o600))
	require.NoError(t, config.LoadFile(file, &cfg))
	require.Equal(t, config.Duration(time.Hour), cfg.Retention.MaxAge)
	require.Equal(t, int64(1<<20), cfg.Retention.MaxBytes)
	bad := cfg
	bad.Retention.MaxBytes = 1000
	require.ErrorContains(t, bad.Validate(), "retention.maxBytes")

	p := startPipeline(t, cfg)
	api := p.APIURL()
	const (
		oldCluster = "ret-old"
		newCluster = "ret-new"
		oldN       = 40
		newN       = 1500 // ~2 KiB bodies: a few MiB stored, well over maxBytes
		batch      = 100
	)
	// Two hours old: past maxAge.
	var items []string
	for i := range oldN {
		items = append(items, eventAt(fmt.Sprintf("old-%04d", i), time.Now().Add(-2*time.Hour), 200))
	}
	postItems(t, p, oldCluster, items...)
	waitForMetric(t, api, `auditpipe_localstore_pruned_events_total{reason="age"}`, oldN)
	require.Zero(t, queryEvents(t, api, url.Values{"cluster": {oldCluster}}).Total, "old events are gone")

	// Recent events, each a millisecond after the previous, over the size
	// limit: the oldest go first, the newest stay.
	base := time.Now().Add(-30 * time.Minute)
	for from := 0; from < newN; from += batch {
		items = items[:0]
		for i := from; i < min(from+batch, newN); i++ {
			items = append(items, eventAt(fmt.Sprintf("new-%05d", i), base.Add(time.Duration(i)*time.Millisecond), 2000))
		}
		postItems(t, p, newCluster, items...)
	}
	waitStoredOrPrunedBySize(t, api, newCluster, newN)
	// Oldest first: the newest event stays, the oldest went.
	dbPath := StorePath(cfg.DataDir, eventstore.EngineSQLite)
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	var lo, hi string
	var n int
	require.NoError(t, db.QueryRow(`SELECT min(audit_id), max(audit_id), count(*) FROM events WHERE cluster = ?`, newCluster).Scan(&lo, &hi, &n))
	require.Equal(t, fmt.Sprintf("new-%05d", newN-1), hi, "the newest event is kept")
	loIdx, err := strconv.Atoi(strings.TrimPrefix(lo, "new-"))
	require.NoError(t, err)
	require.Positive(t, loIdx, "the oldest event is gone")
	// Not necessarily contiguous: events reach the store in batches that
	// need not follow their timestamps, and each step deletes the oldest
	// present. How many stay varies (pages in use fall only as whole pages
	// empty, so a round may delete more than the excess; the local store's
	// TestRetentionBySizeSmallExcess bounds a step).
	require.LessOrEqual(t, n, newN-loIdx)

	// The metric is what the file holds, and within the limit.
	var metric float64
	var used, onDisk int64
	require.Eventually(t, func() bool {
		metric = metricValue(t, api, "auditpipe_localstore_used_bytes")
		used, onDisk = fileUsedBytes(t, dbPath)
		return metric > 0 && metric <= 1<<20 && int64(metric) == used && used <= onDisk
	}, time.Minute, 200*time.Millisecond, "used_bytes metric %v, measured %d, on disk %d", metric, used, onDisk)
	t.Logf("kept %d of %d events (oldest kept new-%05d); used_bytes %v, on disk %d", n, newN, loIdx, metric, onDisk)
}

// TestRetentionInAllInOneVlogs: the same on the default engine (vlogs),
// whose retention goes by whole days: events older than maxAge (rounded
// down to a day) go, the store is cut back to maxBytes by its oldest
// days, and auditpipe_localstore_used_bytes (the storage's compressed
// parts, index and event files) ends within the limit. The bodies are
// random hex: the storage compresses repeated text ~20×, and these must
// exceed 1 MiB stored, over four days.
func TestRetentionInAllInOneVlogs(t *testing.T) {
	cfg := testConfig(t)
	require.Equal(t, eventstore.EngineVictoriaLogs, cfg.Store.Engine, "the default engine")
	cfg.Retention.MaxAge = config.Duration(7 * 24 * time.Hour)
	cfg.Retention.MaxBytes = 1 << 20
	cfg.Retention.Interval = config.Duration(200 * time.Millisecond)

	p := startPipeline(t, cfg)
	api := p.APIURL()
	const (
		oldCluster = "ret-old"
		newCluster = "ret-new"
		oldN       = 40
		newN       = 1500
		batch      = 100
	)
	var items []string
	for i := range oldN {
		items = append(items, eventAt(fmt.Sprintf("old-%04d", i), time.Now().Add(-10*24*time.Hour), 200))
	}
	postItems(t, p, oldCluster, items...)
	waitForMetric(t, api, `auditpipe_localstore_pruned_events_total{reason="age"}`, oldN)
	require.Zero(t, queryEvents(t, api, url.Values{"cluster": {oldCluster}}).Total, "old events are gone")

	r := rand.New(rand.NewPCG(7, 8))
	// Four days, a quarter of the events each, the newest ending now.
	base := time.Now().Add(-30 * time.Minute)
	at := func(i int) time.Time {
		return base.Add(-time.Duration(3-i*4/newN)*24*time.Hour + time.Duration(i)*time.Millisecond)
	}
	for from := 0; from < newN; from += batch {
		items = items[:0]
		for i := from; i < min(from+batch, newN); i++ {
			noise := make([]byte, 600)
			for j := range noise {
				noise[j] = byte(r.Uint32())
			}
			ev := eventAt(fmt.Sprintf("new-%05d", i), at(i), 0)
			items = append(items, strings.Replace(ev, `"v":""`, `"v":"`+hex.EncodeToString(noise)+`"`, 1))
		}
		postItems(t, p, newCluster, items...)
	}
	stored := waitStoredOrPrunedBySize(t, api, newCluster, newN)
	newest := queryEvents(t, api, url.Values{"cluster": {newCluster}, "limit": {"1"}})
	require.Len(t, newest.Events, 1)
	require.Equal(t, fmt.Sprintf("new-%05d", newN-1), newest.Events[0].AuditID, "the newest event is kept")
	require.Zero(t, searchAPI(t, api, url.Values{"cluster": {newCluster}, "q": {"auditID:new-00000"}}).Total, "the oldest event is gone")

	var metric float64
	ok := assert.Eventually(t, func() bool {
		metric = metricValue(t, api, "auditpipe_localstore_used_bytes")
		return metric > 0 && metric <= 1<<20
	}, time.Minute, 200*time.Millisecond)
	require.True(t, ok, "used_bytes metric %v, want (0, 1 MiB]", metric)
	t.Logf("kept %d of %d events; used_bytes %v", stored, newN, metric)
}
