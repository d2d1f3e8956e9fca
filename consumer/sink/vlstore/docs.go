package vlstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// docs keeps the events as written, outside the storage's columns: one
// append-only file per day partition (docsDir/YYYYMMDD) of zstd blocks,
// blocks of up to blockEvents events. A stored row names its event by
// docRef (the block's offset and the event's index in it) in the _doc
// field, which the storage keeps as a number column: no bloom filter, no
// tokenizing. Keeping the event as _msg made the storage tokenize every
// word of it a second time, at every merge: half of the store's CPU
// (decision 0026, step 4 second round).
//
// Crash safety: a Write's blocks are written and fsynced before its
// rows are added, so no row outlives its event. A block torn by a crash
// is never named by a row (its rows were not added): garbage at the end
// of the file, which later blocks follow. Files are dropped with their
// day's partition (retention); events deleted inside a day stay in its
// file until then.
type docs struct {
	dir string
	enc *zstd.Encoder // EncodeAll: safe for concurrent use
	dec *zstd.Decoder // safe for concurrent DecodeAll

	mu     sync.Mutex
	files  map[string]*os.File // day → open for read and append
	sizes  map[string]int64    // day → size, where the next block goes
	blocks blockCache
}

const (
	docsDir        = "docs"
	fieldDoc       = "auditpipe:doc"
	blockMagic     = "APD1"
	blockHeaderLen = 12 // magic, compressed length, CRC-32C of the compressed bytes
	// maxBlockEvents is docRef's index range.
	maxBlockEvents = 1 << 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// docRef is an event's place: its block's offset << 16 | its index.
type docRef uint64

func (r docRef) String() string { return strconv.FormatUint(uint64(r), 10) }

func parseDocRef(s string) (docRef, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("event reference %q: %w", s, err)
	}
	return docRef(v), nil
}

func openDocs(storePath string) (*docs, error) {
	dir := filepath.Join(storePath, docsDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("event files: %w", err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, fmt.Errorf("event files: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("event files: %w", err)
	}
	return &docs{dir: dir, enc: enc, dec: dec, files: map[string]*os.File{}, sizes: map[string]int64{}, blocks: newBlockCache(64)}, nil
}

// file returns day's file, opened (created) on first use (d.mu held).
func (d *docs) file(day string) (*os.File, error) {
	if f := d.files[day]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(filepath.Join(d.dir, day), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("event file %s: %w", day, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("event file %s: %w", day, err)
	}
	d.files[day], d.sizes[day] = f, st.Size()
	return f, nil
}

// blockEvents is the most events in a block: a read decompresses a whole
// block for one event, so blocks stay small (~45 KB of 1.4 KB events)
// while compressing well.
const blockEvents = 32

// appendBlock writes events at the end of day's file, blockEvents to a
// block, and returns their references; the caller syncs (sync) before
// naming them in rows. The blocks are compressed in parallel (one Write's
// latency bounds a busy cluster's partition, see decodeAll) and written
// in one write, so concurrent Writes' blocks never interleave.
func (d *docs) appendBlock(day string, events []string) ([]docRef, error) {
	chunks := slices.Collect(slices.Chunk(events, blockEvents))
	blocks := make([][]byte, len(chunks))
	inParallel(len(chunks), min(len(chunks), runtime.GOMAXPROCS(0)), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			blocks[i] = d.encodeBlock(chunks[i])
		}
	})
	size := 0
	for _, b := range blocks {
		size += len(b)
	}
	all := make([]byte, 0, size)
	for _, b := range blocks {
		all = append(all, b...)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := d.file(day)
	if err != nil {
		return nil, err
	}
	off := d.sizes[day]
	if off+int64(size) >= 1<<48 {
		return nil, fmt.Errorf("event file %s: %d bytes, at the reference's limit", day, off)
	}
	// One write: a crash leaves the blocks whole or torn at the end,
	// never interleaved with another Write's.
	if _, err := f.WriteAt(all, off); err != nil {
		return nil, fmt.Errorf("event file %s: write %d bytes at %d: %w", day, len(all), off, err)
	}
	d.sizes[day] = off + int64(size)
	refs := make([]docRef, 0, len(events))
	for i, b := range blocks {
		for j := range chunks[i] {
			refs = append(refs, docRef(uint64(off)<<16|uint64(j)))
		}
		off += int64(len(b))
	}
	return refs, nil
}

// encodeBlock makes one block of events (at most blockEvents): header,
// then the zstd of their lengths and bytes.
func (d *docs) encodeBlock(events []string) []byte {
	n := binary.MaxVarintLen64
	for _, e := range events {
		n += binary.MaxVarintLen64 + len(e)
	}
	raw := make([]byte, 0, n)
	raw = binary.AppendUvarint(raw, uint64(len(events)))
	for _, e := range events {
		raw = binary.AppendUvarint(raw, uint64(len(e)))
		raw = append(raw, e...)
	}
	block := make([]byte, blockHeaderLen, blockHeaderLen+len(raw)/3)
	block = d.enc.EncodeAll(raw, block)
	copy(block, blockMagic)
	binary.LittleEndian.PutUint32(block[4:], uint32(len(block)-blockHeaderLen))
	binary.LittleEndian.PutUint32(block[8:], crc32.Checksum(block[blockHeaderLen:], castagnoli))
	return block
}

// sync makes the given days' files durable. The fsyncs run outside d.mu:
// other Writes append meanwhile (files are closed only by retention and
// Close, which hold the store's writers off).
func (d *docs) sync(days iter.Seq[string]) error {
	type dayFile struct {
		day string
		f   *os.File
	}
	var files []dayFile
	d.mu.Lock()
	for day := range days {
		if f := d.files[day]; f != nil {
			files = append(files, dayFile{day, f})
		}
	}
	d.mu.Unlock()
	for _, df := range files {
		if err := df.f.Sync(); err != nil {
			return fmt.Errorf("event file %s: fsync: %w", df.day, err)
		}
	}
	return nil
}

// get returns the event ref names in day's file.
func (d *docs) get(day string, ref docRef) (string, error) {
	off, idx := int64(ref>>16), int(ref&(maxBlockEvents-1))
	key := blockKey{day, off}
	events, ok := d.blocks.get(key)
	if !ok {
		var err error
		if events, err = d.readBlock(day, off); err != nil {
			return "", err
		}
		d.blocks.put(key, events)
	}
	if idx >= len(events) {
		return "", fmt.Errorf("event file %s: block at %d holds %d events, not %d", day, off, len(events), idx+1)
	}
	return events[idx], nil
}

func (d *docs) readBlock(day string, off int64) ([]string, error) {
	d.mu.Lock()
	f, err := d.file(day)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var h [blockHeaderLen]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return nil, fmt.Errorf("event file %s: block header at %d: %w", day, off, err)
	}
	if string(h[:4]) != blockMagic {
		return nil, fmt.Errorf("event file %s: no block at %d", day, off)
	}
	comp := make([]byte, binary.LittleEndian.Uint32(h[4:]))
	if _, err := f.ReadAt(comp, off+blockHeaderLen); err != nil {
		return nil, fmt.Errorf("event file %s: block at %d: %w", day, off, err)
	}
	if crc32.Checksum(comp, castagnoli) != binary.LittleEndian.Uint32(h[8:]) {
		return nil, fmt.Errorf("event file %s: block at %d: checksum mismatch", day, off)
	}
	raw, err := d.dec.DecodeAll(comp, nil)
	if err != nil {
		return nil, fmt.Errorf("event file %s: block at %d: %w", day, off, err)
	}
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > maxBlockEvents {
		return nil, fmt.Errorf("event file %s: block at %d: bad event count", day, off)
	}
	raw = raw[k:]
	events := make([]string, 0, n)
	for range n {
		l, k := binary.Uvarint(raw)
		if k <= 0 || uint64(len(raw)-k) < l {
			return nil, fmt.Errorf("event file %s: block at %d: truncated event %d", day, off, len(events))
		}
		events = append(events, string(raw[k:k+int(l)]))
		raw = raw[k+int(l):]
	}
	return events, nil
}

// drop removes day's file (its partition is gone).
func (d *docs) drop(day string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f := d.files[day]; f != nil {
		_ = f.Close()
		delete(d.files, day)
		delete(d.sizes, day)
	}
	d.blocks.dropDay(day)
	if err := os.Remove(filepath.Join(d.dir, day)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("event file %s: %w", day, err)
	}
	return nil
}

// dropOrphans removes the files of days not in partitions.
func (d *docs) dropOrphans(partitions []string) error {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("event files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !slices.Contains(partitions, e.Name()) {
			errs = append(errs, d.drop(e.Name()))
		}
	}
	return errors.Join(errs...)
}

// bytes is the files' total size.
func (d *docs) bytes() int64 {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			n += info.Size()
		}
	}
	return n
}

func (d *docs) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for day, f := range d.files {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("event file %s: %w", day, err))
		}
	}
	clear(d.files)
	d.dec.Close()
	return errors.Join(errs...)
}

type blockKey struct {
	day string
	off int64
}

// blockCache keeps the last blocks read: a page of events is mostly a few
// neighbouring blocks. FIFO eviction.
type blockCache struct {
	mu    sync.Mutex
	max   int
	m     map[blockKey][]string
	order []blockKey
}

func newBlockCache(max int) blockCache {
	return blockCache{max: max, m: map[blockKey][]string{}}
}

func (c *blockCache) get(k blockKey) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *blockCache) put(k blockKey, v []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.m[k] = v
	c.order = append(c.order, k)
}

func (c *blockCache) dropDay(day string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.order[:0]
	for _, k := range c.order {
		if k.day == day {
			delete(c.m, k)
			continue
		}
		kept = append(kept, k)
	}
	c.order = kept
}
