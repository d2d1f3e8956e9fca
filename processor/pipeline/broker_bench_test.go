package pipeline_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// BenchmarkBroker compares the processor with a plain consume → produce
// pass-through on the same in-process broker in the same run: both read
// the same records with the sarama consumer group and write with the
// sarama producer; the pass-through copies each record, the processor
// runs the pipeline (TKE default policy, redaction, enrichment). b.N is
// the number of events per leg; give it explicitly:
//
//	go test -run '^$' -bench BenchmarkBroker -benchtime 20000x ./pipeline
//
// events/s is wall-clock throughput from the first batch to the last
// (group join excluded); events/cpu-s divides by the CPU time of the
// whole process over the same span, broker included (it runs in
// process), so it is a per-core figure for broker + stage together.
func BenchmarkBroker(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	admin, err := saramakafka.NewAdmin(brokers, "bench-admin")
	require.NoError(b, err)
	b.Cleanup(func() { _ = admin.Close() })
	loader, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "bench-loader"})
	require.NoError(b, err)
	b.Cleanup(func() { _ = loader.Close() })
	prod, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "bench-stage"})
	require.NoError(b, err)
	b.Cleanup(func() { _ = prod.Close() })

	for _, tc := range []struct {
		name  string
		event []byte
	}{
		{"metadata-1.4KB", metadataEvent(b)},
		{"requestresponse-22KB", requestResponseEvent(b, 22<<10)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			run := func(leg string, newHandler func(out, group string) kafka.Handler) (perSec, perCPUSec float64) {
				suffix := leg + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
				raw, out := "bench-raw-"+suffix, "bench-out-"+suffix
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				for _, topic := range []string{raw, out, out + "-dlq"} {
					require.NoError(b, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 3, ReplicationFactor: 1}))
				}
				recs := make([]kafka.Record, 0, 1000)
				for i := range b.N {
					r := raw0(tc.event)
					r.Topic, r.Key = raw, []byte(strconv.Itoa(i))
					recs = append(recs, r)
					if len(recs) == cap(recs) || i == b.N-1 {
						require.NoError(b, loader.Produce(ctx, recs...))
						recs = recs[:0]
					}
				}
				g, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "bench-" + suffix, Topics: []string{raw}, MaxBatch: 500}.WithDefaults())
				require.NoError(b, err)
				defer g.Close()
				h := newHandler(out, "bench-"+suffix)
				var once sync.Once
				var t0 time.Time
				var cpu0 time.Duration
				var done atomic.Int64
				finished := make(chan time.Time, 1)
				gctx, gcancel := context.WithCancel(ctx)
				defer gcancel()
				errc := make(chan error, 1)
				go func() {
					errc <- g.Run(gctx, kafka.HandlerFunc(func(ctx context.Context, bt kafka.Batch) error {
						once.Do(func() { t0, cpu0 = time.Now(), cpuTime(b) })
						if err := h.Handle(ctx, bt); err != nil {
							return err
						}
						if done.Add(int64(len(bt.Records))) >= int64(b.N) {
							select {
							case finished <- time.Now():
							default:
							}
						}
						return nil
					}))
				}()
				var t1 time.Time
				select {
				case t1 = <-finished:
				case err := <-errc:
					b.Fatalf("%s: group stopped: %v", leg, err)
				case <-ctx.Done():
					b.Fatalf("%s: timed out after %d of %d events", leg, done.Load(), b.N)
				}
				cpu := cpuTime(b) - cpu0
				gcancel()
				<-errc
				return float64(b.N) / t1.Sub(t0).Seconds(), float64(b.N) / cpu.Seconds()
			}

			passRate, passCPU := run("pass", func(out, _ string) kafka.Handler {
				return kafka.HandlerFunc(func(ctx context.Context, bt kafka.Batch) error {
					outRecs := make([]kafka.Record, len(bt.Records))
					for i, r := range bt.Records {
						outRecs[i] = kafka.Record{Topic: out, Key: r.Key, Value: r.Value, Headers: r.Headers}
					}
					return prod.Produce(ctx, outRecs...)
				})
			})
			procRate, procCPU := run("proc", func(out, _ string) kafka.Handler {
				p, err := pipeline.New(pipeline.Config{Topics: schemas.Topics{Raw: "unused", Events: out, DLQ: out + "-dlq"}}, benchPolicy(b), prod, nil, nil)
				require.NoError(b, err)
				return p
			})
			// The processor in exactly-once mode: one transaction per batch.
			eosRate, eosCPU := run("eos", func(out, group string) kafka.Handler {
				tx, err := saramakafka.NewTransactor(kafka.TransactorConfig{ProducerConfig: kafka.ProducerConfig{Brokers: brokers},
					Group: group, TransactionalID: group})
				require.NoError(b, err)
				b.Cleanup(func() { _ = tx.Close() })
				p, err := pipeline.New(pipeline.Config{Topics: schemas.Topics{Raw: "unused", Events: out, DLQ: out + "-dlq"}}, benchPolicy(b), nil, nil, nil,
					pipeline.WithTransactions(tx))
				require.NoError(b, err)
				return p
			})
			b.ReportMetric(eosRate, "eos-events/s")
			b.ReportMetric(eosCPU, "eos-events/cpu-s")
			b.ReportMetric(eosRate/passRate, "eos-ratio")
			b.ReportMetric(passRate, "pass-events/s")
			b.ReportMetric(procRate, "proc-events/s")
			b.ReportMetric(procRate/passRate, "ratio")
			b.ReportMetric(passCPU, "pass-events/cpu-s")
			b.ReportMetric(procCPU, "proc-events/cpu-s")
			b.ReportMetric(0, "ns/op") // one op is not one event here
		})
	}
}

// raw0 is a raw-topic record as the producer writes it.
func raw0(value []byte) kafka.Record {
	r := raw(0, value)
	return kafka.Record{Value: r.Value, Headers: r.Headers}
}
