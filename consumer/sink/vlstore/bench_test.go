package vlstore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/consumer/internal/cpubench"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/vlstore"
)

// BenchmarkWriteSizes compares the write path of this store with the
// SQLite store (consumer/sink/local's benchmark of the same name) on the
// same synthetic events, 1.4 KB and 22 KB, in batches of 500, reporting
// events per CPU-second of the whole process (background merges
// included) up to and including Close, which flushes what is left:
//
//	go test -run '^$' -bench 'BenchmarkWriteSizes/1400B' -benchtime 200x ./sink/vlstore/
//	go test -run '^$' -bench 'BenchmarkWriteSizes/22528B' -benchtime 40x ./sink/vlstore/
//
// (200x = 100,000 events.) Engines: sqlite; vlogs (checkpoint per Write:
// the contract); vlogs-defer (the consumer's: DeferSync, a Sync every 20
// Writes).
func BenchmarkWriteSizes(b *testing.B) {
	engines := []struct {
		name string
		open func(b *testing.B) eventstore.Store
		// every is how many Writes a Sync follows (0: none).
		every int
	}{
		{"sqlite", func(b *testing.B) eventstore.Store {
			s, err := local.Open(filepath.Join(b.TempDir(), "bench.db"), local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}, 0},
		{"vlogs", func(b *testing.B) eventstore.Store {
			s, err := vlstore.Open(filepath.Join(b.TempDir(), "vlogs"), eventstore.Options{}, vlstore.Config{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}, 0},
		{"vlogs-defer", func(b *testing.B) eventstore.Store {
			s, err := vlstore.Open(filepath.Join(b.TempDir(), "vlogs"), eventstore.Options{}, vlstore.Config{DeferSync: true, SyncInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}, 20},
	}
	for _, size := range []int{1400, 22 << 10} {
		for _, e := range engines {
			b.Run(fmt.Sprintf("%dB/%s", size, e.name), func(b *testing.B) {
				const batch = 500
				batches := make([][][]byte, b.N)
				ts := time.Now()
				for i := range batches {
					batches[i] = make([][]byte, batch)
					for j := range batches[i] {
						batches[i][j] = eventgen.Event("c1", fmt.Sprintf("bench-%d-%d", i, j), size, ts)
					}
				}
				s := e.open(b)
				b.SetBytes(int64(batch * size))
				b.ResetTimer()
				done := cpubench.Start(b)
				for i := range b.N {
					res, err := s.Write(context.Background(), batches[i])
					if err != nil {
						b.Fatal(err)
					}
					if res.Inserted != batch {
						b.Fatalf("inserted %d of %d: %+v", res.Inserted, batch, res)
					}
					if e.every > 0 && (i+1)%e.every == 0 {
						if err := s.(eventstore.Syncer).Sync(context.Background()); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				done(b.N * batch)
			})
		}
	}
}

// BenchmarkWriteReplay measures Write for events older than the identity
// window (a replay, decision 0008): every batch costs one
// auditID:in(...) lookup over its time range, in a store that already
// holds as many events in that range (written before the timer starts).
//
//	go test -run '^$' -bench BenchmarkWriteReplay -benchtime 200x ./sink/vlstore/
func BenchmarkWriteReplay(b *testing.B) {
	for _, window := range []time.Duration{time.Hour, 7 * 24 * time.Hour} {
		name := "old"
		if window > 24*time.Hour {
			name = "in-window"
		}
		b.Run(name, func(b *testing.B) {
			const batch, size = 500, 1400
			start := time.Now().Add(-48 * time.Hour)
			gen := func(prefix string) [][][]byte {
				out := make([][][]byte, b.N)
				for i := range out {
					out[i] = make([][]byte, batch)
					for j := range out[i] {
						// Spread over an hour, interleaved with the other set.
						ts := start.Add(time.Duration(i*batch+j) * time.Hour / time.Duration(b.N*batch))
						out[i][j] = eventgen.Event("c1", fmt.Sprintf("%s-%d-%d", prefix, i, j), size, ts)
					}
				}
				return out
			}
			before, batches := gen("before"), gen("replay")
			s, err := vlstore.Open(filepath.Join(b.TempDir(), "vlogs"), eventstore.Options{}, vlstore.Config{IdentityWindow: window})
			if err != nil {
				b.Fatal(err)
			}
			for _, v := range before {
				if _, err := s.Write(context.Background(), v); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			done := cpubench.Start(b)
			for i := range b.N {
				res, err := s.Write(context.Background(), batches[i])
				if err != nil {
					b.Fatal(err)
				}
				if res.Inserted != batch {
					b.Fatalf("inserted %d of %d: %+v", res.Inserted, batch, res)
				}
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			done(b.N * batch)
		})
	}
}
