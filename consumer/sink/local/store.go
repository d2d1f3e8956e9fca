package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	// Registers the "sqlite" database/sql driver (pure Go, FTS5 included).
	_ "modernc.org/sqlite"
)

// Options configures a Store. The zero value is usable.
type Options struct {
	// Logger receives open/close and migration messages. Nil discards them.
	Logger *slog.Logger
	// Registerer, when not nil, gets the store's metrics. Injected rather
	// than global so that tests and several stores in one process do not
	// collide.
	Registerer prometheus.Registerer
	// BusyTimeout is how long a connection waits for a lock held by another
	// connection (another process, or a WAL checkpoint) before failing.
	// Default 5s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read-only connection pool used by Query.
	// Default: GOMAXPROCS, at least 2.
	ReadConns int
	// OnReused, when not nil, is called by Write after its transaction
	// committed, with the events it stored marked auditpipe.auditIDReused
	// (each the ProcessedEvent JSON as given to Write; the marker is set
	// in the stored copy only). The marker is only known here, after the
	// stateless processor ran, so this is where a detection on it is
	// raised (decision 0016). It runs on the writer's goroutine: keep it
	// short. The events are stored whatever it does, and a redelivery of
	// them is a duplicate, so it is called once per stored event.
	OnReused func(ctx context.Context, events [][]byte)
}

// Store is the local event store. It is safe for concurrent use.
type Store struct {
	logger  *slog.Logger
	path    string
	writer  *sql.DB // exactly one connection: the single writer
	readers *sql.DB // read-only connections (mode=ro, query_only)
	metrics *metrics
	// onReused is Options.OnReused.
	onReused func(ctx context.Context, events [][]byte)

	// Group commit (write.go): writing holds one token while a Write call
	// owns the writer connection; queue holds the rows of the calls
	// waiting for a transaction.
	writing chan struct{}
	queueMu sync.Mutex
	queue   []*writeRequest

	closeOnce sync.Once
	closeErr  error
}

// Open opens the store at path, creating the file and the schema when they do
// not exist and migrating an older schema. One process should own a file: a
// second writer in another process would only queue behind busy_timeout.
func Open(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("open local store: empty path")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	readConns := opts.ReadConns
	if readConns <= 0 {
		readConns = max(runtime.GOMAXPROCS(0), 2)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open local store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("open local store %s: create directory: %w", path, err)
	}
	// Before any connection opens: the search's SQL functions are only
	// available on connections opened after registration.
	if err := registerFunctions(); err != nil {
		return nil, fmt.Errorf("open local store %s: register SQL functions: %w", path, err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("open local store %s: %w", path, err)
	}

	// A file: URI so that SQLite's own mode=ro applies to the readers; the
	// escaped path keeps '?' or '#' in a directory name from being read as
	// URI syntax.
	uri := "file:" + (&url.URL{Path: abs}).EscapedPath()
	busyMS := strconv.FormatInt(busy.Milliseconds(), 10)
	writerDSN := uri + "?" + url.Values{
		"_busy_timeout": {busyMS},
		"_journal_mode": {"WAL"},
		// FULL: with WAL, NORMAL may lose the last committed transactions
		// on power loss or an OS crash; their Kafka offsets would already
		// be committed, so those events would be lost for good.
		"_synchronous": {"FULL"},
		// The writer takes the write lock at BEGIN, so a transaction never
		// fails halfway when upgrading from a read lock.
		"_txlock": {"immediate"},
	}.Encode()
	writer, err := sql.Open("sqlite", writerDSN)
	if err != nil {
		return nil, fmt.Errorf("open local store %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxIdleTime(0)
	writer.SetConnMaxLifetime(0)

	s := &Store{logger: logger, path: abs, writer: writer, metrics: m, onReused: opts.OnReused, writing: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), busy+30*time.Second)
	defer cancel()
	version, err := migrate(ctx, writer)
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("open local store %s: %w", path, err)
	}
	var mode string
	if err := writer.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		_ = writer.Close()
		return nil, fmt.Errorf("open local store %s: journal_mode is %q, want wal: %v", path, mode, err)
	}

	// Readers are opened after the writer created the file and the WAL, so
	// mode=ro can attach to them. query_only is belt and braces for the
	// user-supplied SQL the search language will run on these connections.
	readerDSN := uri + "?" + url.Values{
		"mode":          {"ro"},
		"_busy_timeout": {busyMS},
		"_query_only":   {"1"},
	}.Encode()
	readers, err := sql.Open("sqlite", readerDSN)
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("open local store %s: readers: %w", path, err)
	}
	readers.SetMaxOpenConns(readConns)
	readers.SetMaxIdleConns(readConns)
	if err := readers.PingContext(ctx); err != nil {
		_ = readers.Close()
		_ = writer.Close()
		return nil, fmt.Errorf("open local store %s: readers: %w", path, err)
	}
	s.readers = readers
	logger.Info("local store opened", "path", abs, "schema_version", version, "read_conns", readConns)
	return s, nil
}

// Close closes the store. Writes and queries in flight finish first (the
// connection pools wait for them). Safe to call twice; later calls return the
// first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if err := s.readers.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close readers: %w", err))
		}
		// The writer closes last: the last connection to a WAL database
		// checkpoints it and removes the -wal and -shm files.
		if err := s.writer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close writer: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close local store %s: %w", s.path, err)
		}
		s.metrics.unregister()
		s.logger.Info("local store closed", "path", s.path)
	})
	return s.closeErr
}
