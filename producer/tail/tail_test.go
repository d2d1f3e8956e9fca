package tail

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/producer/internal/testkit"
	"github.com/auditpipe/auditpipe/schemas"
)

type harness struct {
	t       *testing.T
	dir     string
	path    string
	brokers []string
	topics  schemas.Topics
	prod    kafka.Producer
	cfg     Config
	tailer  *Tailer
	reg     *prometheus.Registry
	stop    func()
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	dir := t.TempDir()
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers, MaxMessageBytes: 4 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(dir, "log", "audit.log")
	cfg.Cluster = "c1"
	cfg.CheckpointFile = filepath.Join(dir, "tail.checkpoint")
	cfg.PollInterval = 20 * time.Millisecond
	cfg.Topics = testkit.Topics(t, brokers)
	if mutate != nil {
		mutate(&cfg)
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(cfg.Path), 0o755))
	h := &harness{t: t, dir: dir, path: cfg.Path, brokers: brokers, topics: cfg.Topics, prod: prod, cfg: cfg}
	return h
}

// start runs a fresh tailer (as after a restart) until stop.
func (h *harness) start() {
	h.t.Helper()
	h.reg = prometheus.NewRegistry()
	tl, err := New(h.cfg, h.prod, h.reg, slog.New(slog.DiscardHandler))
	require.NoError(h.t, err)
	h.tailer = tl
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	stopped := false
	h.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(h.t, <-done)
	}
	h.t.Cleanup(h.stop)
}

func line(id string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/pods"}`+"\n", id)
}

func appendTo(t *testing.T, path string, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	require.NoError(t, err)
	_, err = f.WriteString(s)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func lines(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(line(fmt.Sprintf("%s-%d", prefix, i)))
	}
	return b.String()
}

// waitCheckpoint waits until the checkpoint is at off in the file at path.
func (h *harness) waitCheckpoint(path string, off int64) {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		cp, err := ReadCheckpoint(h.cfg.CheckpointFile)
		return err == nil && cp != nil && cp.Offset == off && cp.matches(path)
	}, 20*time.Second, 10*time.Millisecond, "checkpoint reaches %s:%d", path, off)
}

func size(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Size()
}

// requireExactly checks that the raw topic holds each of ids exactly once.
func (h *harness) requireExactly(ids map[string]bool) []kafka.Record {
	h.t.Helper()
	got := testkit.Collect(h.t, h.brokers, h.topics.Raw, 30*time.Second, testkit.AtLeast(len(ids)))
	counts := testkit.Distinct(got)
	for id := range ids {
		require.Equal(h.t, 1, counts[id], "event %s", id)
	}
	require.Len(h.t, got, len(ids))
	return got
}

func ids(prefix string, n int, into map[string]bool) map[string]bool {
	if into == nil {
		into = map[string]bool{}
	}
	for i := range n {
		into[fmt.Sprintf("%s-%d", prefix, i)] = true
	}
	return into
}

// TestLinesPartialLinesAndDeadLetters: every line becomes one record with
// the file source; a partial last line waits for its newline; a malformed
// line goes to the DLQ naming file and offset, and the tail continues.
func TestLinesPartialLinesAndDeadLetters(t *testing.T) {
	h := newHarness(t, nil)
	appendTo(t, h.path, lines("a", 10))
	h.start()
	bad := "this is not json\n"
	badOffset := size(t, h.path)
	appendTo(t, h.path, bad+"\n")
	half := line("partial")
	appendTo(t, h.path, half[:40])
	complete := size(t, h.path) - 40
	h.waitCheckpoint(h.path, complete)
	time.Sleep(100 * time.Millisecond)
	cp, err := ReadCheckpoint(h.cfg.CheckpointFile)
	require.NoError(t, err)
	require.Equal(t, complete, cp.Offset, "a partial line is not consumed")
	appendTo(t, h.path, half[40:])
	h.waitCheckpoint(h.path, size(t, h.path))

	got := h.requireExactly(ids("a", 10, map[string]bool{"partial": true}))
	for _, r := range got {
		require.Equal(t, schemas.SourceFile, string(r.HeaderValue(schemas.HeaderSource)))
		require.Equal(t, "c1", string(r.HeaderValue(schemas.HeaderCluster)))
		var ev schemas.Event
		require.NoError(t, json.Unmarshal(r.Value, &ev))
		require.Equal(t, ev.AuditID, string(r.Key))
	}
	dlq := testkit.Collect(t, h.brokers, h.topics.DLQ, 30*time.Second, testkit.AtLeast(1))
	require.Len(t, dlq, 1)
	require.Equal(t, "this is not json", string(dlq[0].Value))
	require.Equal(t, fmt.Sprintf("file %s offset %d: not a JSON object", h.path, badOffset), string(dlq[0].HeaderValue(schemas.HeaderDLQReason)))
	h.stop()
	require.Equal(t, 11.0, testutil.ToFloat64(h.tailer.metrics.lines.WithLabelValues("accepted")))
	require.Equal(t, 1.0, testutil.ToFloat64(h.tailer.metrics.lines.WithLabelValues("dlq")))
	problems, err := testutil.GatherAndLint(h.reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestRotationByRename: the writer keeps writing into the renamed file for
// a moment (as a writer that has not reopened yet does); the tailer
// finishes it, including those late lines, before the new file.
func TestRotationByRename(t *testing.T) {
	h := newHarness(t, nil)
	appendTo(t, h.path, lines("old", 20))
	h.start()
	h.waitCheckpoint(h.path, size(t, h.path))
	rotated := filepath.Join(filepath.Dir(h.path), "audit-2026-01-01T00-00-00.000.log")
	require.NoError(t, os.Rename(h.path, rotated))
	appendTo(t, rotated, lines("late", 5))
	appendTo(t, h.path, lines("new", 20))
	h.waitCheckpoint(h.path, size(t, h.path))
	want := ids("old", 20, ids("late", 5, ids("new", 20, nil)))
	h.requireExactly(want)
	require.Equal(t, 1.0, testutil.ToFloat64(h.tailer.metrics.rotations.WithLabelValues("rename")))
}

// TestCopyTruncateAndDeletion covers the two other rotations.
func TestCopyTruncateAndDeletion(t *testing.T) {
	h := newHarness(t, nil)
	appendTo(t, h.path, lines("before", 10))
	h.start()
	h.waitCheckpoint(h.path, size(t, h.path))
	// copytruncate: copy, then truncate in place.
	data, err := os.ReadFile(h.path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(h.path+".1", data, 0o644))
	require.NoError(t, os.Truncate(h.path, 0))
	appendTo(t, h.path, lines("after-truncate", 3))
	h.waitCheckpoint(h.path, size(t, h.path))
	// deletion, then a new file.
	require.NoError(t, os.Remove(h.path))
	time.Sleep(100 * time.Millisecond)
	appendTo(t, h.path, lines("after-delete", 4))
	h.waitCheckpoint(h.path, size(t, h.path))
	h.requireExactly(ids("before", 10, ids("after-truncate", 3, ids("after-delete", 4, nil))))
	require.Equal(t, 1.0, testutil.ToFloat64(h.tailer.metrics.rotations.WithLabelValues("truncate")))
	require.Equal(t, 1.0, testutil.ToFloat64(h.tailer.metrics.rotations.WithLabelValues("delete")))
}

// TestRestartResumesAtCheckpoint stops the tailer, rotates twice and
// writes more while it is down, and checks that a new tailer reads the
// rest of the checkpointed file, then the rotated file, then the live
// one, each line exactly once (the stop was clean).
func TestRestartResumesAtCheckpoint(t *testing.T) {
	h := newHarness(t, nil)
	appendTo(t, h.path, lines("one", 10))
	h.start()
	h.waitCheckpoint(h.path, size(t, h.path))
	h.stop()
	appendTo(t, h.path, lines("two", 10))
	dir := filepath.Dir(h.path)
	require.NoError(t, os.Rename(h.path, filepath.Join(dir, "audit-1.log")))
	appendTo(t, h.path, lines("three", 10))
	time.Sleep(20 * time.Millisecond) // distinct modification times
	require.NoError(t, os.Rename(h.path, filepath.Join(dir, "audit-2.log")))
	appendTo(t, h.path, lines("four", 10))
	h.start()
	h.waitCheckpoint(h.path, size(t, h.path))
	h.requireExactly(ids("one", 10, ids("two", 10, ids("three", 10, ids("four", 10, nil)))))
}

// TestLongLines: a 12 MB line is read whole and its bodies are cut
// (audit.k8s.io/truncated) to fit; with maxLineBytes below its length it
// goes to the DLQ as a prefix without being held in memory; the lines
// after both arrive.
func TestLongLines(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxLineBytes = 16 << 20 })
	body := strings.Repeat("x", 12<<20)
	long := `{"kind":"Event","auditID":"long","stage":"ResponseComplete","requestObject":{"data":"` + body + `"}}` + "\n"
	tooLong := `{"kind":"Event","auditID":"too-long","stage":"ResponseComplete","requestObject":{"data":"` + body + body + `"}}` + "\n"
	appendTo(t, h.path, long+tooLong+line("after"))
	h.start()
	h.waitCheckpoint(h.path, size(t, h.path))
	got := h.requireExactly(map[string]bool{"long": true, "after": true})
	for _, r := range got {
		if string(r.Key) == "long" {
			var ev schemas.Event
			require.NoError(t, json.Unmarshal(r.Value, &ev))
			require.Equal(t, "true", ev.Annotations["audit.k8s.io/truncated"])
			require.Nil(t, ev.RequestObject)
		}
	}
	dlq := testkit.Collect(t, h.brokers, h.topics.DLQ, 30*time.Second, testkit.AtLeast(1))
	require.Len(t, dlq, 1)
	require.Len(t, dlq[0].Value, h.cfg.MaxEventBytes)
	require.Contains(t, string(dlq[0].HeaderValue(schemas.HeaderDLQReason)), fmt.Sprintf("offset %d: line of %d bytes exceeds maxLineBytes", len(long), len(tooLong)-1))
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	require.ErrorContains(t, c.Validate(), "path")
	c.Path, c.Cluster, c.CheckpointFile = "a", "c", "cp"
	require.NoError(t, c.Validate())
	c.MaxLineBytes = 10
	require.ErrorContains(t, c.Validate(), "maxLineBytes")
}
