package pipeline_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// BenchmarkHandleDetections is BenchmarkHandle with and without the
// shipped detection rules: the difference in events/cpu-s is what the
// rules cost. The RequestResponse event is a privileged pod create, the
// worst case: three rules look into its 11 KB body and one alert is
// produced per event; "nomatch" is the same pod unprivileged (the rules
// still look into the body, nothing fires); "mix" is make bench's
// default mix, 7 Metadata events, 2 Request deployment creates and 1
// RequestResponse privileged pod create in every 10.
//
//	go test -run '^$' -bench BenchmarkHandleDetections -benchmem -cpu 1 ./pipeline
func BenchmarkHandleDetections(b *testing.B) {
	rules, err := detect.LoadDefault("")
	require.NoError(b, err)
	rr, md, dep := requestResponseEvent(b, 22<<10), metadataEvent(b), fixture(b, "create_deployment.json")
	for _, ev := range []struct {
		name   string
		events [][]byte
	}{
		{"metadata-1.4KB", [][]byte{md}},
		{"requestresponse-22KB", [][]byte{rr}},
		{"requestresponse-22KB-nomatch", [][]byte{bytes.ReplaceAll(rr, []byte(`"privileged":true`), []byte(`"privileged":false`))}},
		{"mix-70-20-10", [][]byte{md, md, md, dep, md, md, rr, md, dep, md}},
	} {
		for _, mode := range []struct {
			name  string
			rules *detect.Fleet
		}{
			{"rules=none", nil},
			{"rules=default", &detect.Fleet{Default: rules}},
		} {
			b.Run(ev.name+"/"+mode.name, func(b *testing.B) {
				pol := benchPolicy(b)
				p, err := pipeline.New(pipeline.Config{Topics: schemas.DefaultTopics()}, pol, discard{}, nil, nil)
				require.NoError(b, err)
				require.NoError(b, p.SetFleet(pipeline.Fleet{Default: pol, Detections: mode.rules}))

				const batchSize = 500
				recs := make([]kafka.Record, batchSize)
				size := 0
				for i := range recs {
					recs[i] = raw(int64(i), ev.events[i%len(ev.events)])
					size += len(recs[i].Value)
				}
				b.SetBytes(int64(size / batchSize))
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime(b)
				for i := 0; i < b.N; i += batchSize {
					n := min(batchSize, b.N-i)
					if err := p.Handle(context.Background(), batch(recs[:n]...)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/(cpuTime(b)-cpu0).Seconds(), "events/cpu-s")
			})
		}
	}
}
