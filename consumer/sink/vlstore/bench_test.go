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
// the contract); vlogs-every10 (one checkpoint per 10 Writes, 5,000
// events: what a sink committing offsets after checkpoints would do).
func BenchmarkWriteSizes(b *testing.B) {
	engines := []struct {
		name string
		open func(b *testing.B) eventstore.Store
	}{
		{"sqlite", func(b *testing.B) eventstore.Store {
			s, err := local.Open(filepath.Join(b.TempDir(), "bench.db"), local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"vlogs", func(b *testing.B) eventstore.Store {
			s, err := vlstore.Open(filepath.Join(b.TempDir(), "vlogs"), eventstore.Options{}, vlstore.Config{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"vlogs-every10", func(b *testing.B) eventstore.Store {
			s, err := vlstore.Open(filepath.Join(b.TempDir(), "vlogs"), eventstore.Options{}, vlstore.Config{})
			if err != nil {
				b.Fatal(err)
			}
			vlstore.SetCheckpointEvery(s, 10)
			return s
		}},
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
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				done(b.N * batch)
			})
		}
	}
}
