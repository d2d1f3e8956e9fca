package local_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/consumer/internal/cpubench"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// BenchmarkWriteSizes measures the store with synthetic events of 1.4 KB
// and 22 KB (a Request-level event with a body), in batches of 500 as the
// consumer hands them, reporting events per wall-second and per
// CPU-second:
//
//	go test -run '^$' -bench BenchmarkWriteSizes -benchtime 20x ./sink/local/
func BenchmarkWriteSizes(b *testing.B) {
	for _, size := range []int{1400, 22 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			s, err := local.Open(filepath.Join(b.TempDir(), "bench.db"), local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			const batch = 500
			batches := make([][][]byte, b.N)
			ts := time.Now()
			for i := range batches {
				batches[i] = make([][]byte, batch)
				for j := range batches[i] {
					batches[i][j] = eventgen.Event("c1", fmt.Sprintf("bench-%d-%d", i, j), size, ts)
				}
			}
			b.SetBytes(int64(batch * size))
			b.ResetTimer()
			done := cpubench.Start(b)
			for i := range b.N {
				if _, err := s.Write(context.Background(), batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			done(b.N * batch)
		})
	}
}
