package replaycmd_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// clsEnv is a local CLS server (the real SDK's wire format, signatures
// checked) knowing the topics of clusters c1 and c2, and the files a
// replay needs to reach it.
type clsEnv struct {
	srv                    *clslocal.Server
	url                    string
	fleet, idFile, keyFile string
}

func newCLSEnv(t *testing.T, fleetYAML string) clsEnv {
	t.Helper()
	const id, key = "AKIDreplay", "replaykey"
	srv := clslocal.New(clslocal.Options{
		Credentials: []clslocal.Credential{{SecretID: id, SecretKey: key}},
		Topics:      []string{"topic-c1", "topic-c2"},
	})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	e := clsEnv{srv: srv, url: hs.URL, fleet: filepath.Join(dir, "fleet.yaml"),
		idFile: filepath.Join(dir, "id"), keyFile: filepath.Join(dir, "key")}
	require.NoError(t, os.WriteFile(e.fleet, []byte(fleetYAML), 0o600))
	require.NoError(t, os.WriteFile(e.idFile, []byte(id+"\n"), 0o600))
	require.NoError(t, os.WriteFile(e.keyFile, []byte(key+"\n"), 0o600))
	return e
}

func (e clsEnv) args() []string {
	return []string{"--target", "cls", "--fleet", e.fleet, "--cls-endpoint", e.url,
		"--cls-secret-id-file", e.idFile, "--cls-secret-key-file", e.keyFile}
}

// received returns the CLS logs by (cluster, auditID, stage, contentHash),
// counting deliveries, and checks that each went to its cluster's topic.
func (e clsEnv) received(t *testing.T) (map[string]int, int) {
	t.Helper()
	out := map[string]int{}
	logs := e.srv.Logs()
	for _, l := range logs {
		cluster, _ := l.Get("auditpipe.cluster")
		auditID, _ := l.Get("auditID")
		stage, _ := l.Get("stage")
		hash, _ := l.Get("auditpipe.contentHash")
		require.Equal(t, "topic-"+cluster, l.Topic, "event of cluster %s sent to the wrong topic", cluster)
		require.NotEmpty(t, hash)
		out[cluster+"/"+auditID+"/"+stage+"/"+hash]++
	}
	return out, len(logs)
}

const fleetBoth = "clusters:\n  c1:\n    cls: {topicID: topic-c1}\n  c2:\n    cls: {topicID: topic-c2}\n"

// TestReplayToCLS replays the raw topic into CLS through the real SDK: the
// events land once each in their cluster's topic, the same events as a
// replay into the local store holds.
func TestReplayToCLS(t *testing.T) {
	brokers, topic, _ := rawTopic(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	base := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic}

	// The reference: the same replay into a local store.
	store := filepath.Join(dir, "ref")
	require.NoError(t, run(ctx, append(base, "--target", "local", "--store", store, "--checkpoint", filepath.Join(dir, "ref.json")), &bytes.Buffer{}, &bytes.Buffer{}))
	want := map[string]bool{}
	clusters := map[string]bool{}
	for _, pe := range storedEvents(t, eventstore.EngineVictoriaLogs, store) {
		want[pe.Pipeline.Cluster+"/"+pe.AuditID+"/"+pe.Stage+"/"+pe.Pipeline.ContentHash] = true
		clusters[pe.Pipeline.Cluster] = true
	}
	require.Len(t, clusters, 2)

	e := newCLSEnv(t, fleetBoth)
	var out bytes.Buffer
	require.NoError(t, run(ctx, append(append(base, e.args()...), "--checkpoint", filepath.Join(dir, "cls.json")), &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "complete")
	got, n := e.received(t)
	require.Equal(t, len(want), n, "each event sent once")
	require.Equal(t, want, keys(got))
	require.Equal(t, n, totalEventsOut(t, out.String()), "the summary counts what CLS received")

	// Running the finished replay again sends nothing.
	require.NoError(t, run(ctx, append(append(base, e.args()...), "--checkpoint", filepath.Join(dir, "cls.json")), &bytes.Buffer{}, &bytes.Buffer{}))
	_, again := e.received(t)
	require.Equal(t, n, again)
}

// TestReplayToCLSResumes interrupts a replay into CLS part-way and runs it
// again: CLS then holds every event, each once, and no event CLS holds
// differs from the reference in (cluster, auditID, stage, contentHash).
func TestReplayToCLSResumes(t *testing.T) {
	brokers, topic, _ := rawTopic(t, 1)
	dir := t.TempDir()
	// Each CLS write waits for the SDK's linger (at least 100ms): batches
	// small enough to interrupt part-way, large enough to stay quick.
	const batch = 25
	base := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--parallelism", "1", "--batch-size", strconv.Itoa(batch)}

	store := filepath.Join(dir, "ref")
	require.NoError(t, run(context.Background(), append(base, "--target", "local", "--store", store, "--checkpoint", filepath.Join(dir, "ref.json")), &bytes.Buffer{}, &bytes.Buffer{}))
	want := map[string]bool{}
	for _, pe := range storedEvents(t, eventstore.EngineVictoriaLogs, store) {
		want[pe.Pipeline.Cluster+"/"+pe.AuditID+"/"+pe.Stage+"/"+pe.Pipeline.ContentHash] = true
	}

	e := newCLSEnv(t, fleetBoth)
	cp := filepath.Join(dir, "cls.json")
	args := append(append(base, e.args()...), "--checkpoint", cp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Interrupt once the checkpoint shows progress.
		for ctx.Err() == nil {
			if data, err := os.ReadFile(cp); err == nil && progressed(data) {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	err := run(ctx, args, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "interrupted")
	data, rerr := os.ReadFile(cp)
	require.NoError(t, rerr)
	require.False(t, complete(data), "interrupted before the end:\n%s", data)
	_, partial := e.received(t)
	require.Less(t, partial, len(want))

	var out bytes.Buffer
	require.NoError(t, run(context.Background(), args, &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "complete")
	got, n := e.received(t)
	require.Equal(t, want, keys(got), "every event in CLS, none different")
	t.Logf("events %d, sent before the interrupt %d, after the resume %d", len(want), partial, n-partial)
	// Ctrl-C finishes the batch in flight and saves the checkpoint past
	// it, so nothing is sent twice (a kill -9 could repeat that batch,
	// with the same identity and content hash).
	require.Equal(t, len(want), n, "the resume sent events again")
}

// TestReplayToCLSRefusesUnroutedClusters: a cluster without a CLS topic
// stops the replay with an error naming it; nothing is dropped silently.
func TestReplayToCLSRefusesUnroutedClusters(t *testing.T) {
	brokers, topic, _ := rawTopic(t, 1)
	dir := t.TempDir()
	e := newCLSEnv(t, "clusters:\n  c1:\n    cls: {topicID: topic-c1}\n")
	args := append(append([]string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic}, e.args()...),
		"--checkpoint", filepath.Join(dir, "cls.json"))
	err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, `cluster "c2" has no CLS topic`)

	// Missing settings are named.
	err = run(context.Background(), []string{"replay", "--brokers", strings.Join(brokers, ","), "--target", "cls", "--checkpoint", filepath.Join(dir, "x.json")}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "--cls-endpoint")
}

func keys(m map[string]int) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// TestReplayToCLSSurvivesKill kills the processor binary (SIGKILL) part-way
// through a replay into CLS and resumes it: CLS then holds every event, and
// what the killed run's last batch sent again is the same (cluster,
// auditID, stage, contentHash), at most one batch.
func TestReplayToCLSSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	brokers, topic, _ := rawTopic(t, 1)
	dir := t.TempDir()
	bin := filepath.Join(dir, "processor")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/processor")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	const batch = 25
	base := []string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--parallelism", "1", "--batch-size", strconv.Itoa(batch)}
	store := filepath.Join(dir, "ref")
	require.NoError(t, run(context.Background(), append(base, "--target", "local", "--store", store, "--checkpoint", filepath.Join(dir, "ref.json")), &bytes.Buffer{}, &bytes.Buffer{}))
	want := map[string]bool{}
	for _, pe := range storedEvents(t, eventstore.EngineVictoriaLogs, store) {
		want[pe.Pipeline.Cluster+"/"+pe.AuditID+"/"+pe.Stage+"/"+pe.Pipeline.ContentHash] = true
	}

	e := newCLSEnv(t, fleetBoth)
	cp := filepath.Join(dir, "cls.json")
	args := append(append(base, e.args()...), "--checkpoint", cp)
	cmd := exec.Command(bin, args...)
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(time.Minute)
	for {
		data, err := os.ReadFile(cp)
		if err == nil && progressed(data) {
			break
		}
		require.True(t, time.Now().Before(deadline), "no progress in the checkpoint")
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	data, err := os.ReadFile(cp)
	require.NoError(t, err)
	require.False(t, complete(data), "killed before the end:\n%s", data)
	_, before := e.received(t)

	var out bytes.Buffer
	require.NoError(t, run(context.Background(), args, &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "complete")
	got, n := e.received(t)
	t.Logf("events %d, sent before the kill %d, in all %d", len(want), before, n)
	require.Equal(t, want, keys(got), "every event in CLS, none different")
	require.LessOrEqual(t, n-len(want), batch, "more repeats than the batch in flight")
}
