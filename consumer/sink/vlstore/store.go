package vlstore

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/VictoriaLogs/lib/logstorage"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// Config is the engine's own settings, besides eventstore.Options.
type Config struct {
	// FlushInterval is VictoriaLogs' -inmemoryDataFlushInterval: how often
	// it writes in-memory parts to files on its own. Write does not rely
	// on it (it checkpoints); it bounds the loss of a crash only for
	// callers that checkpoint less often. Default 5s, minimum 1s.
	FlushInterval time.Duration
	// IdentityWindow is how far back (by event time) the identity cache
	// is loaded when the store opens: redeliveries of events older than
	// that are looked up in the storage per batch instead. Default 24h.
	IdentityWindow time.Duration
	// IdentityMax bounds the identity cache: at most that many stored
	// events (65–100 bytes each), the oldest by event time forgotten
	// first and looked up per batch like those out of the window. At
	// 4,000 events/s the default 250,000 (~25 MB) covers the last minute,
	// which holds what Kafka redelivers after a crash of a consumer
	// keeping up (its offsets are committed every second or so); the
	// redeliveries of a consumer far behind cost a lookup per batch.
	// Unbounded, the cache grew with the window's event count (24 h at
	// 4,000/s: 345 million) and starved the process of memory.
	IdentityMax int
	// DeferSync: Write adds its events without making them durable, and
	// Sync (eventstore.Syncer) checkpoints. The consumer's local sink
	// syncs before each offset commit; a checkpoint per Write costs ~2-3
	// CPU-s per 100,000 events more (decision 0026). False: every Write
	// checkpoints (concurrent ones share one), durable on return.
	DeferSync bool
	// SyncInterval is the least time between two of Sync's checkpoints: a
	// Sync sooner after the last one first waits for the rest, without
	// holding up Writes (only the offset commit waits). Each checkpoint
	// writes file parts of one or more files per column (hundreds with
	// request and response bodies), hard-linked and fsynced, that merges
	// then combine: at a paced 2,000 events/s of the default mix a
	// checkpoint per commit round spent a quarter of the pipeline's CPU in
	// open, link and fsync. Default 1s; negative: no wait.
	SyncInterval time.Duration
	// SearchTempDir is where the search fallback's temporary SQLite stores
	// go (search.go: ~4.7 KB per candidate). Empty: os.TempDir (TMPDIR).
	// Open creates it and removes what a killed process left in it. Put
	// it on the store's volume where TMPDIR is small (the chart's /tmp is
	// a 64Mi emptyDir).
	SearchTempDir string
	// CacheBytes is what VictoriaLogs' caches and in-memory parts may
	// take (its -memory.allowedBytes; queries' sort and stats state is
	// bounded at 20–40 % of it). Process-wide and fixed by the first Open
	// in a process. Default 128 MiB, within the all-in-one's memory
	// limit (384 MiB by default).
	CacheBytes int64
	// AgeGranularity is how exactly retention by age (eventstore.Retention
	// .MaxAge) cuts: the bound is rounded down to a multiple of it (UTC),
	// so events up to that much older than MaxAge may stay. Days wholly
	// before the bound are dropped as partitions (cheap); a bound inside a
	// day deletes that day's older rows by a delete task, which rewrites
	// the parts holding them (the whole day, once merged) every time the
	// bound moves. Default 24h: whole days only, no rewrites.
	AgeGranularity time.Duration
}

func (c Config) withDefaults() Config {
	if c.FlushInterval <= 0 {
		c.FlushInterval = 5 * time.Second
	}
	if c.IdentityWindow <= 0 {
		c.IdentityWindow = 24 * time.Hour
	}
	if c.IdentityMax <= 0 {
		c.IdentityMax = 250_000
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 128 << 20
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = time.Second
	}
	if c.AgeGranularity <= 0 {
		c.AgeGranularity = 24 * time.Hour
	}
	return c
}

// Time range the storage accepts (MustAddRows drops other rows with only a
// throttled warning, so Write refuses them first as invalid). The past
// reaches the oldest fixtures and replays: retention by age is
// eventstore.Retention's job (retention.go), not the storage's.
const (
	storageRetention = 30 * 365 * 24 * time.Hour
	futureRetention  = 7 * 24 * time.Hour
)

// Store is the VictoriaLogs-backed event store. See the package doc for
// what works.
type Store struct {
	vl      *logstorage.Storage
	path    string
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	opts    eventstore.Options
	// lowered: every event in the store has auditpipe:lower (it was
	// created by a version that writes it: lowerMarker), so full text
	// narrows by bloom-filtered phrases (wordFilter). A store written
	// before keeps the any-case filters: exact too, but every value in
	// range is read.
	lowered bool

	// mu: Writes hold it shared for their whole insert (they run
	// concurrently: identities, docs and the storage have their own
	// locks); checkpoints, retention and Close hold it exclusively, so
	// that no row is added meanwhile.
	mu     sync.RWMutex
	closed bool // under mu
	ids    *identities
	// docs holds the events as written (docs.go); rows name them.
	docs *docs
	// days are the per-day partitions (YYYYMMDD) written since the last
	// checkpoint: set by inserts under daysMu, read and cleared by the
	// checkpoint (mu held exclusively).
	daysMu sync.Mutex
	days   map[string]bool
	// added counts the inserts so far; checkpointed is the count the
	// last successful checkpoint covered (durable's group commit),
	// lastCovered the one before (for the writes-per-checkpoint metric).
	added                     atomic.Uint64
	checkpointMu              sync.Mutex
	checkpointed, lastCovered uint64
	// unflushed: rows were added since the last visible (reads flush
	// them first).
	unflushed atomic.Bool

	// syncMu orders Syncs; lastSync is when the last one's checkpoint
	// ended (Open's time before the first: the first Sync after Open,
	// right after the consumer's first batch, waits its interval too).
	syncMu   sync.Mutex
	lastSync time.Time

	closeOnce sync.Once
}

var _ eventstore.Store = (*Store)(nil)

// Open opens (creating it if needed) the store in the directory path.
//
// VictoriaLogs' libraries need process-wide setup (see setupProcess);
// Open does it once per process. I/O errors inside the storage end the
// process (logger.Panicf) instead of being returned: let the consumer
// restart, Kafka redelivers what was not committed.
func Open(path string, opts eventstore.Options, cfg Config) (*Store, error) {
	if path == "" {
		return nil, errors.New("open vlstore: empty path")
	}
	if err := setupProcess(cfg.withDefaults().CacheBytes); err != nil {
		return nil, fmt.Errorf("open vlstore %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open vlstore %s: %w", path, err)
	}
	cfg = cfg.withDefaults()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := prepareSearchTempDir(cfg.SearchTempDir, logger); err != nil {
		return nil, fmt.Errorf("open vlstore %s: %w", path, err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("open vlstore %s: metrics: %w", path, err)
	}
	d, err := openDocs(path)
	if err != nil {
		m.unregister()
		return nil, fmt.Errorf("open vlstore %s: %w", path, err)
	}
	vl := logstorage.MustOpenStorage(path, &logstorage.StorageConfig{
		Retention:       storageRetention,
		FutureRetention: futureRetention,
		FlushInterval:   cfg.FlushInterval,
	})
	lowered, err := markLowered(path, vl)
	if err != nil {
		vl.MustClose()
		_ = d.close()
		m.unregister()
		return nil, fmt.Errorf("open vlstore %s: %w", path, err)
	}
	s := &Store{
		lowered: lowered,
		vl:      vl,
		docs:    d,
		path:    path,
		cfg:     cfg,
		logger:  logger,
		metrics: m,
		opts:    opts,
		days:    map[string]bool{},
	}
	// An event file whose partition is gone was left by a retention
	// round a crash interrupted.
	if err := d.dropOrphans(vl.PartitionList()); err != nil {
		logger.Warn("vlstore: remove event files without a partition", "err", err)
	}
	// Only checkpoints make snapshots in this store, and each deletes its
	// own at once: any left was left by a process that died in between,
	// and holds hard links to parts merges have replaced (disk space).
	for _, p := range vl.PartitionSnapshotList() {
		if err := vl.PartitionSnapshotDelete(p); err != nil {
			logger.Warn("vlstore: delete a checkpoint snapshot left by an earlier process", "snapshot", p, "err", err)
		}
	}
	ids, err := loadIdentities(context.Background(), s.vl, time.Now(), cfg.IdentityWindow, cfg.IdentityMax)
	if err != nil {
		vl.MustClose()
		_ = d.close()
		m.unregister()
		return nil, fmt.Errorf("open vlstore %s: load identities: %w", path, err)
	}
	s.ids = ids
	logger.Info("vlstore opened", "path", path, "identities", ids.len(), "identityWindow", cfg.IdentityWindow, "identityMax", cfg.IdentityMax, "lowerCaseWords", lowered)
	if !lowered {
		logger.Warn("vlstore: this store was written before auditpipe:lower (3 December 2026): full-text searches read every value in their range; a store migrated into a new directory (auditpipe store migrate) has it")
	}
	return s, nil
}

// Sync makes every event a Write returned for durable: one checkpoint of
// what was added since the last one (eventstore.Syncer), at most once per
// SyncInterval. Writes wait for the checkpoint itself (so that it ends).
func (s *Store) Sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if wait := time.Until(s.lastSync.Add(s.cfg.SyncInterval)); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("vlstore: sync: %w", ctx.Err())
		}
	}
	if err := s.durable(s.added.Load()); err != nil {
		return fmt.Errorf("vlstore: sync: %w", err)
	}
	s.lastSync = time.Now()
	return nil
}

// Close checkpoints what was added since the last checkpoint and closes
// the storage. Safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err := s.checkpoint(); err != nil {
			s.logger.Error("vlstore: close: the last rows may not be durable (Kafka redelivers what was not committed)", "err", err)
		}
		s.closed = true
		s.waitMerges(closeMergeWait)
		s.vl.MustClose()
		if err := s.docs.close(); err != nil {
			s.logger.Error("vlstore: close the event files", "err", err)
		}
		s.metrics.unregister()
	})
	return nil
}

// prepareSearchTempDir creates dir (when set) and removes the search
// fallback's temporary stores a killed process left in it.
func prepareSearchTempDir(dir string, logger *slog.Logger) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("search temporary directory: %w", err)
	}
	stale, err := filepath.Glob(filepath.Join(dir, searchTempPattern+"*"))
	if err != nil {
		return fmt.Errorf("search temporary directory: %w", err)
	}
	for _, d := range stale {
		if err := os.RemoveAll(d); err != nil {
			logger.Warn("vlstore: remove a search's temporary store left by an earlier process", "dir", d, "err", err)
		}
	}
	return nil
}

// closeMergeWait bounds how long Close lets running merges finish.
const closeMergeWait = 10 * time.Second

// waitMerges waits up to max for the storage's background merges to end.
// Close calls it with the writers held (no new part, so no new merge):
// lib/logstorage v1.52.2 closes a partition's stream index before its data
// and a merge still running then reads the index's cleared pointer (a data
// race the race detector reports in the tests; harmless without a delete
// task). Past max the storage's close interrupts the merges itself.
func (s *Store) waitMerges(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		var st logstorage.StorageStats
		s.vl.UpdateStats(&st)
		p := st.PartitionStats
		if p.ActiveInmemoryMerges+p.ActiveSmallMerges+p.ActiveBigMerges+p.IndexdbActiveInmemoryMerges+p.IndexdbActiveFileMerges == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

var (
	setupMu   sync.Mutex
	setupDone bool
)

// setupProcess does what VictoriaLogs' libraries expect of their own main
// and would otherwise panic without: they register their settings on the
// global flag set at init and read them through flag.CommandLine
// (memory.Allowed panics unless flag.Parsed()). auditpipe's binaries parse
// their own flag sets, so the global one is parsed here, empty, once per
// process; and VictoriaMetrics' logger (stderr, its own format) is set to
// warnings and errors only, since the store reports through slog. This is
// the one piece of global state in the package, forced by the dependency:
// kept here so that no other package has to know.
func setupProcess(cacheBytes int64) error {
	setupMu.Lock()
	defer setupMu.Unlock()
	if setupDone {
		return nil
	}
	if !flag.CommandLine.Parsed() {
		if err := flag.CommandLine.Parse(nil); err != nil {
			return fmt.Errorf("parse the global flag set for VictoriaLogs: %w", err)
		}
	}
	// VictoriaMetrics sizes its caches and in-memory parts from
	// memory.Allowed(), by default 60 % of the machine's memory (14 GiB on
	// a 24 GiB host: the all-in-one's soak at 4,000 events/s reached
	// ~970 MB RSS). Read once, at first use: set it before.
	if f := flag.CommandLine.Lookup("memory.allowedBytes"); f != nil && f.Value.String() == f.DefValue {
		if err := flag.CommandLine.Set("memory.allowedBytes", strconv.FormatInt(cacheBytes, 10)); err != nil {
			return fmt.Errorf("set VictoriaLogs' memory.allowedBytes: %w", err)
		}
	}
	if f := flag.CommandLine.Lookup("loggerLevel"); f != nil && f.Value.String() == f.DefValue {
		if err := flag.CommandLine.Set("loggerLevel", "WARN"); err != nil {
			return fmt.Errorf("set VictoriaLogs' log level: %w", err)
		}
	}
	setupDone = true
	return nil
}

// lowerMarker is the file in the store's directory saying that every
// event in it has auditpipe:lower: Open writes it into a store without
// partitions, before its first event.
const lowerMarker = "lower-case-words"

// markLowered reports whether every event in the store at path has
// auditpipe:lower, writing lowerMarker when the store has no events yet.
func markLowered(path string, vl *logstorage.Storage) (bool, error) {
	marker := filepath.Join(path, lowerMarker)
	switch _, err := os.Stat(marker); {
	case err == nil:
		return true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("%s: %w", lowerMarker, err)
	}
	if len(vl.PartitionList()) > 0 {
		return false, nil // events written before auditpipe:lower
	}
	const text = "Every event in this store has the field auditpipe:lower (consumer/sink/vlstore).\n"
	// Not synced: a marker a crash loses costs speed, not answers (the
	// next Open finds events and no marker).
	if err := os.WriteFile(marker, []byte(text), 0o640); err != nil {
		return false, fmt.Errorf("%s: %w", lowerMarker, err)
	}
	return true, nil
}
