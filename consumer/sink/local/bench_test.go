package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore/storebench"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// BenchmarkWrite measures the consumer's steady state: batches of 500
// Metadata-level events of about 1.4 KB (the size the architecture assumes),
// every one new, each batch one fsynced transaction.
//
//	go test -run '^$' -bench BenchmarkWrite -benchmem ./sink/local/
func BenchmarkWrite(b *testing.B) {
	const batchSize = 500
	s, _ := openStore(b, local.Options{})
	templates := storebench.MetadataEvents(b)
	ctx := context.Background()

	// Build all batches before the timer: the benchmark measures the store,
	// not the test's JSON encoding.
	batches := make([][][]byte, b.N)
	var bytes int
	for i := range batches {
		batch := make([][]byte, batchSize)
		for j := range batch {
			ev := templates[(i*batchSize+j)%len(templates)]
			ev.AuditID = fmt.Sprintf("%08x-bench-%d-%d", i*batchSize+j, i, j)
			v, err := json.Marshal(ev)
			require.NoError(b, err)
			batch[j] = v
			bytes += len(v)
		}
		batches[i] = batch
	}

	b.ReportAllocs()
	b.SetBytes(int64(bytes / b.N))
	b.ResetTimer()
	for i := range b.N {
		res, err := s.Write(ctx, batches[i])
		if err != nil || res.Inserted != batchSize {
			b.Fatalf("write: %+v, %v", res, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(bytes)/float64(b.N*batchSize), "B/event")
}
