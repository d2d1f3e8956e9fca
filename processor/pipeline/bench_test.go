package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// discard is a kafka.Producer that drops records: the CPU benchmarks
// measure the pipeline alone. The broker benchmarks use a real one.
type discard struct{}

func (discard) Produce(context.Context, ...kafka.Record) error { return nil }
func (discard) Close() error                                   { return nil }

// metadataEvent is a real event (Falco's create_secret) at Metadata level,
// padded with the annotations and user extras an admission chain and an
// OIDC login add, to the ~1.4 KB of a typical Metadata event.
func metadataEvent(tb testing.TB) []byte {
	tb.Helper()
	var ev map[string]any
	require.NoError(tb, json.Unmarshal(fixture(tb, "create_secret.json"), &ev))
	ann := ev["annotations"].(map[string]any)
	ann["authorization.k8s.io/reason"] = `RBAC: allowed by ClusterRoleBinding "platform-admins" of ClusterRole "cluster-admin" to Group "platform"`
	ann["mutation.webhook.admission.k8s.io/round_0_index_0"] = `{"configuration":"gatekeeper","webhook":"mutation.gatekeeper.sh","mutated":false}`
	ann["pod-security.kubernetes.io/enforce-policy"] = "restricted:latest"
	user := ev["user"].(map[string]any)
	user["uid"] = "3f2a1e7c-5b9d-4c1a-8e6f-0a9b8c7d6e5f"
	user["extra"] = map[string]any{"authentication.kubernetes.io/credential-id": []string{"X509SHA256=8f2b4c6d0e1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c"}}
	b, err := json.Marshal(ev)
	require.NoError(tb, err)
	return b
}

// requestResponseEvent is a real RequestResponse event (Falco's privileged
// pod create) whose pod spec is grown with containers to ~22 KB, the size
// of a typical RequestResponse event of a workload write.
func requestResponseEvent(tb testing.TB, size int) []byte {
	tb.Helper()
	var ev map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(fixture(tb, "create_nginx_pod_privileged.json"), &ev))
	grow := func(body json.RawMessage, n int) json.RawMessage {
		var pod map[string]any
		require.NoError(tb, json.Unmarshal(body, &pod))
		spec := pod["spec"].(map[string]any)
		cs := spec["containers"].([]any)
		for i := 0; len(cs) < n; i++ {
			c := map[string]any{"name": fmt.Sprintf("sidecar-%d", i), "image": "registry.example.com/team/sidecar:v1.2.3",
				"env":       []any{map[string]any{"name": "LOG_LEVEL", "value": "info"}, map[string]any{"name": "ENDPOINT", "value": "https://collector.observability.svc:4317"}},
				"resources": map[string]any{"limits": map[string]any{"cpu": "500m", "memory": "256Mi"}, "requests": map[string]any{"cpu": "100m", "memory": "64Mi"}},
				"ports":     []any{map[string]any{"containerPort": 8080, "protocol": "TCP"}}}
			cs = append(cs, c)
		}
		spec["containers"] = cs
		b, err := json.Marshal(pod)
		require.NoError(tb, err)
		return b
	}
	for n := 2; ; n++ {
		ev["requestObject"] = grow(ev["requestObject"], n)
		ev["responseObject"] = grow(ev["responseObject"], n)
		b, err := json.Marshal(ev)
		require.NoError(tb, err)
		if len(b) >= size {
			return b
		}
	}
}

func benchPolicy(tb testing.TB) *policy.Policy {
	tb.Helper()
	pol, err := policy.Load(policies.TKEDefaultName, policies.TKEDefault)
	require.NoError(tb, err)
	return pol
}

// BenchmarkHandle measures the pipeline's CPU cost per event, without a
// broker: one op is one event. Run with -cpu 1 for events/s per core:
//
//	go test -run '^$' -bench BenchmarkHandle -benchmem -cpu 1 ./pipeline
func BenchmarkHandle(b *testing.B) {
	for _, tc := range []struct {
		name  string
		event []byte
		level string
	}{
		{"metadata-1.4KB", metadataEvent(b), policy.LevelMetadata},
		{"requestresponse-22KB", requestResponseEvent(b, 22<<10), policy.LevelRequestResponse},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := pipeline.New(pipeline.Config{Topics: schemas.DefaultTopics()}, benchPolicy(b), discard{}, nil, nil)
			require.NoError(b, err)
			// Check once that the event is kept at the intended level.
			rec := &recorder{}
			p2, _ := pipeline.New(pipeline.Config{Topics: schemas.DefaultTopics()}, benchPolicy(b), rec, nil, nil)
			require.NoError(b, p2.Handle(b.Context(), batch(raw(0, tc.event))))
			require.Contains(b, string(rec.records()[0].Value), `"level":"`+tc.level+`"`)

			const batchSize = 500
			recs := make([]kafka.Record, batchSize)
			for i := range recs {
				recs[i] = raw(int64(i), tc.event)
			}
			b.SetBytes(int64(len(tc.event)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := 0; i < b.N; i += batchSize {
				n := min(batchSize, b.N-i)
				if err := p.Handle(context.Background(), batch(recs[:n]...)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			// CPU time, unlike wall-clock time, does not count the time
			// other processes on a shared machine hold the cores.
			b.ReportMetric(float64(b.N)/(cpuTime(b)-cpu0).Seconds(), "events/cpu-s")
		})
	}
}

// cpuTime is the CPU time (user + system) this process used so far.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
