package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

func batch(i int) []kafka.Record {
	return []kafka.Record{
		{Topic: "raw", Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)), Headers: []kafka.Header{{Key: "auditpipe.cluster", Value: []byte("c1")}, {Key: "empty"}}},
		{Topic: "dlq", Value: []byte("x")},
	}
}

func open(t *testing.T, dir string, maxBytes, segBytes int64) *Spool {
	t.Helper()
	s, err := Open(Config{Dir: dir, MaxBytes: maxBytes, SegmentBytes: segBytes}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	return m
}

// TestAppendPeekAckAcrossRestarts checks order, exact round trip of
// records, segment rolling and removal, and that the head survives a
// reopen.
func TestAppendPeekAckAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, 1<<20, 300)
	for i := range 10 {
		require.NoError(t, s.Append(batch(i)))
	}
	require.Greater(t, len(segFiles(t, dir)), 3, "small segments roll")
	got, err := s.Peek(3, 1<<20)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, batch(0), got[0].Records)
	require.NoError(t, s.Ack(3))
	require.NoError(t, s.Close())

	s = open(t, dir, 1<<20, 300)
	require.Equal(t, 7, s.Len())
	got, err = s.Peek(100, 1<<20)
	require.NoError(t, err)
	for i, b := range got {
		require.Equal(t, batch(i+3), b.Records)
	}
	require.NoError(t, s.Ack(7))
	require.Zero(t, s.Stats().Bytes)
	require.Len(t, segFiles(t, dir), 1, "drained segments are deleted")
	require.NoError(t, s.Append(batch(99)))
	require.NoError(t, s.Close())
	s = open(t, dir, 1<<20, 300)
	got, err = s.Peek(100, 1<<20)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, batch(99), got[0].Records)
}

// TestTornWriteIsCutOff simulates a crash in the middle of a write (a
// partial frame at the end) and a flipped byte in the last entry: both
// are detected by the frame checks and cut off, the entries before them
// survive, and new entries are appended after them.
func TestTornWriteIsCutOff(t *testing.T) {
	for _, damage := range []string{"partial frame", "flipped byte", "garbage length"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, 1<<20, 1<<20)
			for i := range 3 {
				require.NoError(t, s.Append(batch(i)))
			}
			require.NoError(t, s.Close())
			seg := segFiles(t, dir)[0]
			data, err := os.ReadFile(seg)
			require.NoError(t, err)
			entry := len(data) / 3
			switch damage {
			case "partial frame":
				data = data[:len(data)-entry/2]
			case "flipped byte":
				data[len(data)-5] ^= 0xff
			case "garbage length":
				data = append(data, 0xff, 0xff, 0xff, 0x00, 1, 2, 3, 4, 5)
			}
			require.NoError(t, os.WriteFile(seg, data, 0o600))

			s = open(t, dir, 1<<20, 1<<20)
			wantLen := 2
			if damage == "garbage length" {
				wantLen = 3
			}
			require.Equal(t, wantLen, s.Len())
			require.Equal(t, 1, s.Stats().Truncated)
			require.NoError(t, s.Append(batch(7)))
			require.NoError(t, s.Close())
			s = open(t, dir, 1<<20, 1<<20)
			got, err := s.Peek(10, 1<<20)
			require.NoError(t, err)
			require.Len(t, got, wantLen+1)
			require.Equal(t, batch(7), got[wantLen].Records)
			require.Zero(t, s.Stats().Truncated, "the cut was persisted")
		})
	}
}

func TestFullSpoolRefuses(t *testing.T) {
	s := open(t, t.TempDir(), 300, 300)
	var err error
	n := 0
	for ; n < 100; n++ {
		if err = s.Append(batch(n)); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrFull)
	require.ErrorContains(t, err, "of 300 bytes used")
	require.Equal(t, n, s.Len(), "a refused batch leaves no trace")
	require.NoError(t, s.Ack(1))
	require.NoError(t, s.Append(batch(1000)), "acknowledging makes room")
}

func TestConfigValidate(t *testing.T) {
	require.ErrorContains(t, Config{MaxBytes: 1, SegmentBytes: 1}.Validate(), "dir")
	require.ErrorContains(t, Config{Dir: "x", MaxBytes: 1, SegmentBytes: 2}.Validate(), "must not exceed")
	require.NoError(t, func() error { c := DefaultConfig(); c.Dir = "x"; return c.Validate() }())
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(time.Unix(1700000000, 5), batch(1)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		at, recs, err := decode(p)
		if err == nil {
			// What decodes re-encodes to the same bytes.
			require.Equal(t, p, encode(at, recs))
		}
	})
}

// BenchmarkAppend measures spooling a 400-event batch of 1.4 KB events,
// fsync included: the cost of one acknowledged batch while Kafka is down.
func BenchmarkAppend(b *testing.B) {
	s, err := Open(Config{Dir: b.TempDir(), MaxBytes: 1 << 40, SegmentBytes: 64 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := make([]kafka.Record, 400)
	for i := range recs {
		recs[i] = kafka.Record{Topic: "raw", Key: []byte(fmt.Sprintf("%036d", i)), Value: make([]byte, 1400)}
	}
	b.SetBytes(400 * 1400)
	b.ResetTimer()
	for range b.N {
		if err := s.Append(recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*400)/b.Elapsed().Seconds(), "events/s")
}
