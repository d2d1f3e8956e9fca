// Package tail follows kube-apiserver's --audit-log-path file and publishes
// one raw-topic record per line, like the webhook receiver does per event.
//
// It follows the file through rotation by rename (audit.log →
// audit-<time>.log, as the apiserver's built-in rotation does), through
// copytruncate and through deletion, and it finishes a rotated file before
// it moves on. Lines may be of any length: a line longer than MaxLineBytes
// is not held in memory but goes to the dead-letter topic (its first
// bytes) with the reason; a partial last line waits for its newline.
//
// Progress is a durable checkpoint: the file's identity (device and inode,
// plus a fingerprint of its first bytes, since inodes are reused) and the
// offset after the last line Kafka acknowledged. Lines are read, produced
// and acknowledged one batch at a time, and the checkpoint only moves
// after the acknowledgement, so after a crash the lines after the
// checkpoint are read again: at-least-once, duplicates limited to one
// batch.
package tail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/durablefile"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/producer/event"
	"github.com/auditpipe/auditpipe/schemas"
)

// Config configures a tailer.
type Config struct {
	// Path is the apiserver's --audit-log-path.
	Path string `json:"path"`
	// Cluster is the cluster id stamped on every record.
	Cluster string `json:"cluster"`
	// CheckpointFile holds the durable progress. Default: Path's
	// directory is not ours to write, so the app puts it in its data dir.
	CheckpointFile string `json:"checkpointFile"`
	// PollInterval is how often the end of the file is checked for new
	// lines and rotation.
	PollInterval time.Duration `json:"pollInterval"`
	// BatchEvents and BatchBytes bound one produce call (and so the
	// window of lines read again after a crash).
	BatchEvents int `json:"batchEvents"`
	BatchBytes  int `json:"batchBytes"`
	// MaxLineBytes is the longest line held in memory to be parsed.
	MaxLineBytes int `json:"maxLineBytes"`
	// MaxEventBytes is the largest record value; larger events lose their
	// bodies (audit.k8s.io/truncated) or go to the dead-letter topic.
	MaxEventBytes int `json:"maxEventBytes"`
	// ProduceTimeout bounds one attempt to produce a batch; failed
	// attempts are retried with backoff for as long as it takes.
	ProduceTimeout time.Duration `json:"produceTimeout"`
	// Topics names the raw and dead-letter topics.
	Topics schemas.Topics `json:"-"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		PollInterval:   250 * time.Millisecond,
		BatchEvents:    500,
		BatchBytes:     8 << 20,
		MaxLineBytes:   64 << 20,
		MaxEventBytes:  900 << 10,
		ProduceTimeout: 10 * time.Second,
		Topics:         schemas.DefaultTopics(),
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("tail: path must be set")
	case c.Cluster == "":
		return errors.New("tail: cluster must be set")
	case c.CheckpointFile == "":
		return errors.New("tail: checkpointFile must be set")
	case c.PollInterval <= 0:
		return errors.New("tail: pollInterval must be positive")
	case c.BatchEvents <= 0 || c.BatchBytes <= 0:
		return errors.New("tail: batchEvents and batchBytes must be positive")
	case c.MaxEventBytes < 1024:
		return errors.New("tail: maxEventBytes must be at least 1024")
	case c.MaxLineBytes < c.MaxEventBytes:
		return errors.New("tail: maxLineBytes must be at least maxEventBytes")
	case c.ProduceTimeout <= 0:
		return errors.New("tail: produceTimeout must be positive")
	}
	return c.Topics.Validate()
}

// fingerprintBytes is how much of a file's start identifies it together
// with its inode.
const fingerprintBytes = 4096

// Checkpoint is the durable progress, stored as JSON.
type Checkpoint struct {
	// Path is where the file was last seen (informational: rotation
	// renames it).
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	// Fingerprint is the hex SHA-256 of the file's first FingerprintLen
	// bytes.
	Fingerprint    string `json:"fingerprint"`
	FingerprintLen int    `json:"fingerprintLen"`
	// Offset is just after the last line Kafka acknowledged.
	Offset int64 `json:"offset"`
}

type metrics struct {
	lines     *prometheus.CounterVec
	bytes     prometheus.Counter
	rotations *prometheus.CounterVec
	errors    prometheus.Counter
	offset    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_tail_lines_total",
			Help: "Audit log lines acknowledged by Kafka, by outcome (accepted, truncated, dlq).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_producer_tail_read_bytes_total",
			Help: "Bytes read from audit log files.",
		}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_tail_rotations_total",
			Help: "Audit log rotations seen, by kind (rename, truncate, delete).",
		}, []string{"kind"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditpipe_producer_tail_produce_errors_total",
			Help: "Failed attempts to produce a batch of lines (retried).",
		}),
		offset: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditpipe_producer_tail_checkpoint_offset_bytes",
			Help: "Offset of the checkpoint in the current audit log file.",
		}),
	}
	if reg != nil {
		if err := telemetry.RegisterAll(reg, m.lines, m.bytes, m.rotations, m.errors, m.offset); err != nil {
			return nil, fmt.Errorf("tail: %w", err)
		}
	}
	return m, nil
}

// Tailer follows one audit log.
type Tailer struct {
	cfg     Config
	pub     kafka.Producer
	logger  *slog.Logger
	metrics *metrics

	// the open file
	f        *os.File
	path     string
	dev, ino uint64
	live     bool  // f is (or was) the file at cfg.Path; false for a rotated file being finished
	pos      int64 // next byte to read
	queue    []string

	// the line being assembled and the batch waiting for Kafka
	lineStart  int64
	line       []byte
	lineLen    int64 // bytes of the line so far, including discarded ones
	discarding bool
	batch      []kafka.Record
	batchBytes int
	batchEnd   int64 // offset after the batch's last line
	outcomes   map[string]int
	buf        []byte
}

// New returns a tailer publishing through pub.
func New(cfg Config, pub kafka.Producer, reg prometheus.Registerer, logger *slog.Logger) (*Tailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.CheckpointFile), 0o700); err != nil {
		return nil, fmt.Errorf("tail: checkpoint dir: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Tailer{cfg: cfg, pub: pub, logger: logger, metrics: m, buf: make([]byte, 256<<10), outcomes: map[string]int{}}, nil
}

// Run follows the log until ctx is canceled. It returns nil then, or an
// error it cannot continue after (an unreadable checkpoint, an I/O error
// on the checkpoint). A missing log file is waited for.
func (t *Tailer) Run(ctx context.Context) error {
	defer t.closeFile()
	if err := t.resume(); err != nil {
		return err
	}
	idle := 0
	for ctx.Err() == nil {
		if t.f == nil {
			if !t.openNext() {
				sleep(ctx, t.cfg.PollInterval)
			}
			continue
		}
		n, err := t.read()
		if err != nil {
			return err
		}
		if n > 0 {
			idle = 0
			if len(t.batch) >= t.cfg.BatchEvents || t.batchBytes >= t.cfg.BatchBytes {
				if err := t.flush(ctx); err != nil {
					return err
				}
			}
			continue
		}
		// At the end of the file: what was read is sent before waiting.
		if err := t.flush(ctx); err != nil {
			return err
		}
		done, err := t.atEOF(idle)
		if err != nil {
			return err
		}
		if done {
			if err := t.finishFile(ctx); err != nil {
				return err
			}
			idle = 0
			continue
		}
		idle++
		sleep(ctx, t.cfg.PollInterval)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// read reads the next chunk and splits it into lines.
func (t *Tailer) read() (int, error) {
	n, err := t.f.ReadAt(t.buf, t.pos)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("tail: read %s at %d: %w", t.path, t.pos, err)
	}
	chunk := t.buf[:n]
	t.metrics.bytes.Add(float64(n))
	for len(chunk) > 0 {
		i := bytes.IndexByte(chunk, '\n')
		part := chunk
		if i >= 0 {
			part = chunk[:i]
		}
		t.appendToLine(part)
		if i < 0 {
			t.pos += int64(len(chunk))
			break
		}
		t.pos += int64(i + 1)
		chunk = chunk[i+1:]
		t.endLine(t.pos)
	}
	return n, nil
}

// appendToLine adds bytes to the current line, switching to discarding
// (keeping only a prefix for the dead letter) past MaxLineBytes.
func (t *Tailer) appendToLine(p []byte) {
	t.lineLen += int64(len(p))
	if t.discarding {
		return
	}
	if len(t.line)+len(p) > t.cfg.MaxLineBytes {
		t.discarding = true
		keep := max(0, min(t.cfg.MaxEventBytes-len(t.line), len(p)))
		t.line = append(t.line, p[:keep]...)
		if len(t.line) > t.cfg.MaxEventBytes {
			t.line = t.line[:t.cfg.MaxEventBytes]
		}
		t.line = slices.Clip(t.line)
		return
	}
	t.line = append(t.line, p...)
}

// endLine turns the completed line (ending just before end) into a record.
func (t *Tailer) endLine(end int64) {
	line, start, lineLen, discarded := t.line, t.lineStart, t.lineLen, t.discarding
	t.line, t.lineLen, t.discarding, t.lineStart = nil, 0, false, end
	line = bytes.TrimRight(line, "\r")
	if !discarded && len(bytes.TrimSpace(line)) == 0 {
		t.batchEnd = end
		return // blank lines carry nothing
	}
	headers := t.headers()
	var rec kafka.Record
	if discarded {
		rec = t.deadLetter(line, headers, start, fmt.Sprintf("line of %d bytes exceeds maxLineBytes %d; the value holds its first %d bytes", lineLen, t.cfg.MaxLineBytes, len(line)))
		t.outcomes["dlq"]++
	} else {
		id, value, truncated, reason := event.Classify(line, t.cfg.MaxEventBytes)
		switch {
		case reason != "":
			rec = t.deadLetter(value, headers, start, reason)
			t.outcomes["dlq"]++
		default:
			rec = kafka.Record{Topic: t.cfg.Topics.Raw, Key: []byte(id.AuditID), Value: slices.Clone(value), Headers: headers}
			if truncated {
				t.outcomes["truncated"]++
			} else {
				t.outcomes["accepted"]++
			}
		}
	}
	t.batch = append(t.batch, rec)
	t.batchBytes += len(rec.Value)
	t.batchEnd = end
}

func (t *Tailer) headers() []kafka.Header {
	return []kafka.Header{
		{Key: schemas.HeaderCluster, Value: []byte(t.cfg.Cluster)},
		{Key: schemas.HeaderSource, Value: []byte(schemas.SourceFile)},
		{Key: schemas.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
	}
}

func (t *Tailer) deadLetter(value []byte, headers []kafka.Header, offset int64, reason string) kafka.Record {
	if len(value) > t.cfg.MaxEventBytes {
		value = value[:t.cfg.MaxEventBytes]
	}
	t.logger.Warn("audit log line rejected to the dead-letter topic", "file", t.path, "offset", offset, "reason", reason)
	return kafka.Record{
		Topic: t.cfg.Topics.DLQ,
		Key:   []byte(t.cfg.Cluster),
		Value: slices.Clone(value),
		Headers: append(headers,
			kafka.Header{Key: schemas.HeaderDLQReason, Value: []byte(fmt.Sprintf("file %s offset %d: %s", t.path, offset, reason))},
			kafka.Header{Key: schemas.HeaderDLQStage, Value: []byte("producer")},
			kafka.Header{Key: schemas.HeaderDLQOrigin, Value: []byte(fmt.Sprintf("file:%s:%d", t.path, offset))}),
	}
}

// flush produces the batch, retrying until Kafka acknowledges it, then
// moves the checkpoint past it.
func (t *Tailer) flush(ctx context.Context) error {
	if len(t.batch) == 0 {
		if t.batchEnd > 0 {
			// Only blank lines since the last checkpoint.
			end := t.batchEnd
			t.batchEnd = 0
			return t.checkpoint(end)
		}
		return nil
	}
	backoff := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, t.cfg.ProduceTimeout)
		err := t.pub.Produce(pctx, t.batch...)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			// Not acknowledged: the lines are read again after a restart.
			return nil
		}
		t.metrics.errors.Inc()
		t.logger.Warn("producing audit log lines failed; retrying (the checkpoint waits)", "file", t.path, "lines", len(t.batch), "err", err, "retry_in", backoff)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	for k, v := range t.outcomes {
		t.metrics.lines.WithLabelValues(k).Add(float64(v))
	}
	clear(t.outcomes)
	t.batch, t.batchBytes = nil, 0
	end := t.batchEnd
	t.batchEnd = 0
	return t.checkpoint(end)
}

// atEOF decides, at the end of the open file, whether the file is done:
// a rotated file is done at its end; the live file is done once the path
// names another file (rename or deletion and recreation) or nothing, and
// it stayed without new bytes for two polls (a writer may still be
// finishing its last lines into it). A truncated live file restarts at 0.
func (t *Tailer) atEOF(idle int) (bool, error) {
	if !t.live {
		return true, nil
	}
	st, err := t.f.Stat()
	if err != nil {
		return false, fmt.Errorf("tail: stat %s: %w", t.path, err)
	}
	if st.Size() < t.pos {
		t.metrics.rotations.WithLabelValues("truncate").Inc()
		t.logger.Info("audit log was truncated (copytruncate); reading it from the start", "file", t.path, "size", st.Size(), "offset", t.pos)
		t.pos, t.lineStart, t.line, t.lineLen, t.discarding = 0, 0, nil, 0, false
		return false, t.checkpoint(0)
	}
	cur, err := os.Stat(t.cfg.Path)
	switch {
	case err == nil && os.SameFile(cur, st):
		return false, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return false, fmt.Errorf("tail: stat %s: %w", t.cfg.Path, err)
	}
	return idle >= 2, nil
}

// finishFile closes a file that will get no more lines and moves on.
func (t *Tailer) finishFile(ctx context.Context) error {
	if len(t.line) > 0 || t.lineLen > 0 {
		// A rotated file never gets the rest of its last line.
		start, line, n := t.lineStart, t.line, t.lineLen
		t.line, t.lineLen, t.discarding = nil, 0, false
		t.batch = append(t.batch, t.deadLetter(line, t.headers(), start,
			fmt.Sprintf("incomplete last line of %d bytes: the file was rotated or deleted before its newline", n)))
		t.outcomes["dlq"]++
		t.batchEnd = t.pos
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
	if ctx.Err() != nil || len(t.batch) > 0 {
		// Not acknowledged: the checkpoint must stay in this file.
		return nil
	}
	if t.live {
		kind := "rename"
		if _, err := os.Stat(t.cfg.Path); errors.Is(err, os.ErrNotExist) {
			kind = "delete"
		}
		t.metrics.rotations.WithLabelValues(kind).Inc()
		t.logger.Info("finished rotated audit log", "file", t.path, "kind", kind, "bytes", t.pos)
	} else {
		t.logger.Info("finished rotated audit log found at start", "file", t.path, "bytes", t.pos)
	}
	t.closeFile()
	t.openNext()
	return nil
}

func (t *Tailer) closeFile() {
	if t.f != nil {
		_ = t.f.Close()
		t.f = nil
	}
}

// openNext opens the next queued rotated file, or the live path at its
// start. It reports whether a file is open.
func (t *Tailer) openNext() bool {
	for len(t.queue) > 0 {
		p := t.queue[0]
		t.queue = t.queue[1:]
		if err := t.open(p, 0, false); err == nil {
			return true
		}
	}
	if err := t.open(t.cfg.Path, 0, true); err != nil {
		return false
	}
	if err := t.checkpoint(0); err != nil {
		t.logger.Error("write checkpoint", "err", err)
	}
	return true
}

func (t *Tailer) open(path string, off int64, live bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	dev, ino := fileID(st)
	t.f, t.path, t.dev, t.ino, t.live, t.pos, t.lineStart = f, path, dev, ino, live, off, off
	t.line, t.lineLen, t.discarding, t.batchEnd = nil, 0, false, 0
	t.metrics.offset.Set(float64(off))
	return nil
}

func fileID(st os.FileInfo) (dev, ino uint64) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), s.Ino
	}
	return 0, 0
}

func fingerprint(f *os.File, n int) (string, int, error) {
	b := make([]byte, n)
	m, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", 0, err
	}
	sum := sha256.Sum256(b[:m])
	return hex.EncodeToString(sum[:]), m, nil
}

// checkpoint durably records that everything before off in the open file
// is acknowledged.
func (t *Tailer) checkpoint(off int64) error {
	fp, n, err := fingerprint(t.f, fingerprintBytes)
	if err != nil {
		return fmt.Errorf("tail: fingerprint %s: %w", t.path, err)
	}
	cp := Checkpoint{Path: t.path, Dev: t.dev, Ino: t.ino, Fingerprint: fp, FingerprintLen: n, Offset: off}
	data, _ := json.Marshal(cp)
	if err := writeFileSync(t.cfg.CheckpointFile, data); err != nil {
		return fmt.Errorf("tail: write checkpoint: %w", err)
	}
	t.metrics.offset.Set(float64(off))
	return nil
}

func writeFileSync(path string, data []byte) error { return durablefile.Write(path, data, 0o600) }

// ReadCheckpoint reads a checkpoint file; a missing file is (nil, nil).
func ReadCheckpoint(path string) (*Checkpoint, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tail: read checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(data, &cp); err != nil {
		return nil, fmt.Errorf("tail: checkpoint %s is not valid JSON (remove it to start over from the beginning of the log): %w", path, err)
	}
	return &cp, nil
}

// matches reports whether the file at path is the checkpoint's file.
func (cp *Checkpoint) matches(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	dev, ino := fileID(st)
	if dev != cp.Dev || ino != cp.Ino || st.Size() < int64(cp.FingerprintLen) {
		return false
	}
	fp, n, err := fingerprint(f, cp.FingerprintLen)
	return err == nil && n == cp.FingerprintLen && fp == cp.Fingerprint
}

// rotatedFiles lists the files next to Path that rotation made of it
// (<stem>-*<ext>, compressed ones excluded), oldest first.
func (t *Tailer) rotatedFiles() []string {
	dir, base := filepath.Split(t.cfg.Path)
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	des, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil
	}
	type cand struct {
		path string
		mod  time.Time
	}
	var cs []cand
	for _, de := range des {
		name := de.Name()
		if name == base || !strings.HasPrefix(name, stem+"-") || !strings.HasSuffix(name, ext) || de.IsDir() {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		cs = append(cs, cand{filepath.Join(dir, name), info.ModTime()})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.path
	}
	return out
}

// resume opens the file and offset of the checkpoint: the live file, or
// a rotated one that is finished first, followed by the files rotated
// after it. Without a checkpoint (or when its file is gone) it starts at
// the beginning of the live file.
func (t *Tailer) resume() error {
	cp, err := ReadCheckpoint(t.cfg.CheckpointFile)
	if err != nil {
		return err
	}
	if cp == nil {
		t.openNext()
		return nil
	}
	if cp.matches(t.cfg.Path) {
		if err := t.open(t.cfg.Path, cp.Offset, true); err == nil {
			t.clampOffset()
			t.logger.Info("resuming audit log at its checkpoint", "file", t.cfg.Path, "offset", t.pos)
			return nil
		}
	}
	rotated := t.rotatedFiles()
	for i, p := range rotated {
		if !cp.matches(p) {
			continue
		}
		if err := t.open(p, cp.Offset, false); err != nil {
			break
		}
		t.clampOffset()
		t.queue = rotated[i+1:]
		t.logger.Info("resuming a rotated audit log at its checkpoint; newer files follow", "file", p, "offset", t.pos, "then", append(slices.Clone(t.queue), t.cfg.Path))
		return nil
	}
	t.logger.Warn("the checkpointed audit log is gone; starting at the beginning of the live file", "checkpoint_path", cp.Path, "path", t.cfg.Path)
	t.openNext()
	return nil
}

// clampOffset restarts a file that is now shorter than its checkpoint.
func (t *Tailer) clampOffset() {
	if st, err := t.f.Stat(); err == nil && st.Size() < t.pos {
		t.pos, t.lineStart = 0, 0
	}
}
