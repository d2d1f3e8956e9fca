package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// BenchmarkWrite measures the consumer's steady state: batches of 500
// Metadata-level events of about 1.4 KB (the size the architecture assumes),
// every one new, each batch one fsynced transaction.
//
//	go test -run '^$' -bench BenchmarkWrite -benchmem ./sink/local/
func BenchmarkWrite(b *testing.B) {
	const batchSize = 500
	s, _ := openStore(b, local.Options{})
	templates := metadataEvents(b)
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

// metadataEvents are the fixtures at Metadata level (bodies stripped) with
// the authorization annotations and user groups a real apiserver adds, which
// brings them to about 1.4 KB.
func metadataEvents(tb testing.TB) []schemas.ProcessedEvent {
	tb.Helper()
	var out []schemas.ProcessedEvent
	for _, e := range localtest.All(tb) {
		e.Level = "Metadata"
		e.RequestObject, e.ResponseObject = nil, nil
		if len(e.User.Groups) == 0 {
			e.User.Groups = []string{"system:authenticated", "oidc:platform-admins"}
		}
		e.User.UID = "8c1f6a2e-5b7d-4e0f-9a3c-2d4b6f8e1a0c"
		e.Annotations = map[string]string{
			"authorization.k8s.io/decision": "allow",
			"authorization.k8s.io/reason": fmt.Sprintf(
				"RBAC: allowed by ClusterRoleBinding %q of ClusterRole %q to User %q",
				"platform-admins-binding", "cluster-admin", e.User.Username),
			"apiserver.latency.k8s.io/total":     "12.345678ms",
			"apiserver.latency.k8s.io/etcd":      "3.210987ms",
			"apiserver.latency.k8s.io/serialize": "101.5µs",
		}
		out = append(out, e.ProcessedEvent)
	}
	return out
}
