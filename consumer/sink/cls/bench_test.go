package cls_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/consumer/internal/cpubench"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// BenchmarkSink sends batches of 500 events through the real SDK to the
// in-process clslocal server (which decompresses, decodes and checks every
// request), with 6 partitions writing at once as a consumer would.
// events/cpu-s counts the whole process: the sink, the SDK and the server.
//
//	go test -run '^$' -bench BenchmarkSink -benchtime 40x ./sink/cls/
func BenchmarkSink(b *testing.B) {
	for _, size := range []int{1400, 22 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			srv, s, _ := setup(b, "lz4")
			const batch, partitions = 500, 6
			batches := make([][]kafka.Record, b.N)
			ts := time.Now()
			for i := range batches {
				batches[i] = make([]kafka.Record, batch)
				for j := range batches[i] {
					c := []string{"alpha", "beta"}[j%2]
					batches[i][j] = kafka.Record{Value: eventgen.Event(c, fmt.Sprintf("b-%d-%d", i, j), size, ts)}
				}
			}
			b.SetBytes(int64(batch * size))
			b.ResetTimer()
			done := cpubench.Start(b)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range partitions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						if err := s.Write(context.Background(), batches[i]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			done(b.N * batch)
			b.StopTimer()
			if got := srv.LogCount(""); got != int64(b.N*batch) {
				b.Fatalf("server got %d logs, want %d", got, b.N*batch)
			}
		})
	}
}
