// Package spool is the producer's bounded on-disk queue. When Kafka is down
// or slow, a batch the receiver must acknowledge is written here and
// fsynced before the apiserver gets its 2xx; a drainer sends the batches to
// Kafka in order when it is back. The spool survives restarts: entries
// carry a CRC-32C, so a write torn by a crash (kill -9, power loss) is
// detected on open and cut off, never delivered half.
//
// Layout: a directory of segment files named <id>.seg, each a sequence of
// entries [length u32][crc32c u32][payload], and a file "head" that records
// the first entry not yet acknowledged by Kafka (segment id and offset).
// An entry is one batch of records. Acknowledged segments are deleted.
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/durablefile"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// ErrFull is returned by Append when the spool has no room for the batch.
// The receiver answers 503 with Retry-After: the apiserver retries.
var ErrFull = errors.New("spool is full")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("spool is closed")

// Config configures a spool.
type Config struct {
	// Dir holds the segment files; created if missing.
	Dir string `json:"dir"`
	// MaxBytes bounds the bytes of entries not yet acknowledged by Kafka.
	// Disk use can exceed it by at most one segment (acknowledged entries
	// at the head of the oldest segment are reclaimed with the segment).
	MaxBytes int64 `json:"maxBytes"`
	// SegmentBytes is the size at which a new segment file is started.
	SegmentBytes int64 `json:"segmentBytes"`
}

// DefaultConfig returns 1 GiB of spool in 64 MiB segments: at one
// apiserver's maximum of about 4,000 Metadata events/s (1.4 KB) that is
// three minutes of Kafka outage; at typical fleet rates, hours.
func DefaultConfig() Config {
	return Config{MaxBytes: 1 << 30, SegmentBytes: 64 << 20}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("spool: dir must be set")
	case c.MaxBytes <= 0:
		return errors.New("spool: maxBytes must be positive")
	case c.SegmentBytes <= 0:
		return errors.New("spool: segmentBytes must be positive")
	case c.SegmentBytes > c.MaxBytes:
		return fmt.Errorf("spool: segmentBytes (%d) must not exceed maxBytes (%d)", c.SegmentBytes, c.MaxBytes)
	}
	return nil
}

const (
	frameHeader = 8
	// maxEntry guards the reader against a corrupt length field.
	maxEntry = 1 << 30
	headFile = "head"
	segExt   = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// entry locates one batch on disk.
type entry struct {
	seg  int64
	off  int64
	size int64 // framed size
	at   time.Time
}

// Spool is the on-disk queue. Append may be called concurrently; Peek and
// Ack by one drainer.
type Spool struct {
	cfg    Config
	logger *slog.Logger

	mu      sync.Mutex
	closed  bool
	entries []entry // not yet acknowledged, oldest first
	bytes   int64   // sum of entries' sizes
	active  *os.File
	seg     int64 // id of the active segment
	segSize int64
	// truncated counts torn or corrupt tails cut off at open.
	truncated int
}

// Open opens (or creates) the spool in cfg.Dir and recovers its entries.
func Open(cfg Config, logger *slog.Logger) (*Spool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create dir: %w", err)
	}
	s := &Spool{cfg: cfg, logger: logger}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("spool %s: %w", cfg.Dir, err)
	}
	return s, nil
}

func (s *Spool) segPath(id int64) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%020d%s", id, segExt))
}

func (s *Spool) segments() ([]int64, error) {
	des, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, de := range des {
		name, ok := strings.CutSuffix(de.Name(), segExt)
		if !ok {
			continue
		}
		id, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// recover rebuilds the entry index from the segments, from the head on,
// cutting each segment at its first entry that is incomplete or fails its
// checksum.
func (s *Spool) recover() error {
	headSeg, headOff, err := s.readHead()
	if err != nil {
		return err
	}
	ids, err := s.segments()
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id < headSeg {
			if err := os.Remove(s.segPath(id)); err != nil {
				return err
			}
			continue
		}
		start := int64(0)
		if id == headSeg {
			start = headOff
		}
		valid, err := s.scan(id, start)
		if err != nil {
			return err
		}
		st, err := os.Stat(s.segPath(id))
		if err != nil {
			return err
		}
		if st.Size() > valid {
			s.truncated++
			s.logger.Error("spool segment has a torn or corrupt tail; cutting it off (a crash interrupted a write that was never acknowledged, or the disk corrupted data)",
				"segment", s.segPath(id), "valid_bytes", valid, "file_bytes", st.Size())
			if err := os.Truncate(s.segPath(id), valid); err != nil {
				return fmt.Errorf("truncate torn segment: %w", err)
			}
		}
		s.seg, s.segSize = id, valid
	}
	if len(ids) == 0 || s.seg < headSeg {
		s.seg, s.segSize = headSeg, 0
	}
	// New entries go to a fresh segment: the last one may end at a cut
	// that another entry must not be appended to before it was fsynced.
	return s.roll()
}

// scan indexes the valid entries of segment id from offset start and
// returns the offset just after the last valid one.
func (s *Spool) scan(id, start int64) (int64, error) {
	f, err := os.Open(s.segPath(id))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	off := start
	var hdr [frameHeader]byte
	for {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return off, nil // EOF or short header: end of valid data
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		sum := binary.BigEndian.Uint32(hdr[4:8])
		if n < 12 || n > maxEntry {
			return off, nil
		}
		payload := make([]byte, n)
		if _, err := f.ReadAt(payload, off+frameHeader); err != nil {
			return off, nil
		}
		if crc32.Checksum(payload, castagnoli) != sum {
			return off, nil
		}
		at := time.Unix(0, int64(binary.BigEndian.Uint64(payload[0:8])))
		s.entries = append(s.entries, entry{seg: id, off: off, size: frameHeader + n, at: at})
		s.bytes += frameHeader + n
		off += frameHeader + n
	}
}

func (s *Spool) readHead() (int64, int64, error) {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, headFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var seg, off int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &seg, &off); err != nil {
		return 0, 0, fmt.Errorf("head file %q is not `segment offset`: %w", b, err)
	}
	return seg, off, nil
}

// writeHead records the first unacknowledged position. It is replaced
// durably (durablefile: fsync, rename, fsync the directory), so a crash
// leaves the old or the new head, never an empty one, and an old head only
// means some batches are sent to Kafka again (at-least-once).
func (s *Spool) writeHead(seg, off int64) error {
	return durablefile.Write(filepath.Join(s.cfg.Dir, headFile), []byte(fmt.Sprintf("%d %d\n", seg, off)), 0o600)
}

// roll closes the active segment and starts segment s.seg+1 (or s.seg if
// none is open yet and it does not exist).
func (s *Spool) roll() error {
	if s.active != nil {
		if err := s.active.Close(); err != nil {
			return err
		}
		s.active = nil
	}
	s.seg++
	f, err := os.OpenFile(s.segPath(s.seg), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create segment: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		_ = f.Close()
		return err
	}
	s.active, s.segSize = f, 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync spool dir: %w", err)
	}
	return nil
}

// Append writes records as one entry and returns once it is fsynced.
func (s *Spool) Append(records []kafka.Record) error {
	now := time.Now()
	payload := encode(now, records)
	frame := make([]byte, frameHeader, frameHeader+len(payload))
	binary.BigEndian.PutUint32(frame[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(frame[4:8], crc32.Checksum(payload, castagnoli))
	frame = append(frame, payload...)
	size := int64(len(frame))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(payload) > maxEntry {
		return fmt.Errorf("spool: batch of %d bytes is larger than an entry may be", len(payload))
	}
	if s.bytes+size > s.cfg.MaxBytes {
		return fmt.Errorf("%w: %d of %d bytes used, batch needs %d", ErrFull, s.bytes, s.cfg.MaxBytes, size)
	}
	if s.segSize > 0 && s.segSize+size > s.cfg.SegmentBytes {
		if err := s.roll(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	if _, err := s.active.Write(frame); err != nil {
		// The file may now end in a partial frame; cut it so the next
		// entry starts on a boundary.
		_ = s.active.Truncate(s.segSize)
		_, _ = s.active.Seek(s.segSize, io.SeekStart)
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := s.active.Sync(); err != nil {
		// After a failed fsync the page cache state is unknown; start a
		// new segment rather than trusting this one further.
		_ = s.active.Truncate(s.segSize)
		_ = s.roll()
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.entries = append(s.entries, entry{seg: s.seg, off: s.segSize, size: size, at: now})
	s.segSize += size
	s.bytes += size
	return nil
}

// Batch is one spooled batch.
type Batch struct {
	Records []kafka.Record
	At      time.Time
}

// Peek returns up to maxEntries oldest batches (at least one if any, then
// no more than maxBytes), without removing them.
func (s *Spool) Peek(maxEntries int, maxBytes int64) ([]Batch, error) {
	s.mu.Lock()
	var take []entry
	var total int64
	for _, e := range s.entries {
		if len(take) >= maxEntries || (len(take) > 0 && total+e.size > maxBytes) {
			break
		}
		take = append(take, e)
		total += e.size
	}
	s.mu.Unlock()
	out := make([]Batch, 0, len(take))
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var open int64 = -1
	for _, e := range take {
		if e.seg != open {
			if f != nil {
				f.Close()
			}
			var err error
			if f, err = os.Open(s.segPath(e.seg)); err != nil {
				return nil, fmt.Errorf("spool: %w", err)
			}
			open = e.seg
		}
		buf := make([]byte, e.size)
		if _, err := f.ReadAt(buf, e.off); err != nil {
			return nil, fmt.Errorf("spool: read entry at %s:%d: %w", s.segPath(e.seg), e.off, err)
		}
		payload := buf[frameHeader:]
		if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(buf[4:8]) {
			return nil, fmt.Errorf("spool: entry at %s:%d fails its checksum (disk corruption)", s.segPath(e.seg), e.off)
		}
		at, recs, err := decode(payload)
		if err != nil {
			return nil, fmt.Errorf("spool: entry at %s:%d: %w", s.segPath(e.seg), e.off, err)
		}
		out = append(out, Batch{Records: recs, At: at})
	}
	return out, nil
}

// Ack removes the n oldest batches (those Kafka acknowledged) and deletes
// segments that hold none any more.
func (s *Spool) Ack(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > len(s.entries) {
		return fmt.Errorf("spool: ack %d of %d entries", n, len(s.entries))
	}
	first := s.entries[0].seg
	for _, e := range s.entries[:n] {
		s.bytes -= e.size
	}
	s.entries = slices.Delete(s.entries, 0, n)
	headSeg, headOff := s.seg, s.segSize
	if len(s.entries) > 0 {
		headSeg, headOff = s.entries[0].seg, s.entries[0].off
	}
	if err := s.writeHead(headSeg, headOff); err != nil {
		return fmt.Errorf("spool: write head: %w", err)
	}
	for id := first; id < headSeg; id++ {
		if err := os.Remove(s.segPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: remove drained segment: %w", err)
		}
	}
	// Once empty, start over in a new segment so the drained one can go.
	if len(s.entries) == 0 && s.segSize > 0 && !s.closed {
		old := s.seg
		if err := s.roll(); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := s.writeHead(s.seg, 0); err != nil {
			return fmt.Errorf("spool: write head: %w", err)
		}
		if err := os.Remove(s.segPath(old)); err != nil {
			return fmt.Errorf("spool: remove drained segment: %w", err)
		}
	}
	return nil
}

// Stats describe the spool's contents.
type Stats struct {
	Entries int
	Bytes   int64
	// Oldest is when the oldest entry was written; zero when empty.
	Oldest    time.Time
	MaxBytes  int64
	Truncated int
}

// Stats returns the current contents.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Entries: len(s.entries), Bytes: s.bytes, MaxBytes: s.cfg.MaxBytes, Truncated: s.truncated}
	if len(s.entries) > 0 {
		st.Oldest = s.entries[0].at
	}
	return st
}

// Len returns the number of entries not yet acknowledged.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Close closes the active segment. Safe to call twice.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.active != nil {
		return s.active.Close()
	}
	return nil
}
