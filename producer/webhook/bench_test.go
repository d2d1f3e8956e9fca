package webhook

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// batchBody returns an EventList of n events of about size bytes each.
func batchBody(n, size int, seq int) []byte {
	var b strings.Builder
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		head := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%08d-%04d-4b7e-9f3c-7c1d2a6b8e90","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"system:serviceaccount:kube-system:replicaset-controller","groups":["system:serviceaccounts"]},"annotations":{"pad":"`, seq, i)
		b.WriteString(head)
		b.WriteString(strings.Repeat("x", max(0, size-len(head)-3)))
		b.WriteString(`"}}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// clients are the adapters the receiver can publish through.
var clients = map[string]func(kafka.ProducerConfig) (kafka.Producer, error){
	"kafkago": func(c kafka.ProducerConfig) (kafka.Producer, error) { return kafkago.NewProducer(c) },
	"sarama":  func(c kafka.ProducerConfig) (kafka.Producer, error) { return saramakafka.NewProducer(c) },
}

func benchServer(b *testing.B, client string) *httptest.Server {
	brokers := kafkatest.Brokers(b)
	cfg := DefaultConfig()
	cfg.Topics = uniqueTopics(b)
	ensureTopics(b, brokers, cfg.Topics)
	prod, err := clients[client](kafka.ProducerConfig{Brokers: brokers, MaxMessageBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = prod.Close() })
	rc, err := New(cfg, prod, mustMetrics(b, prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkAccepted measures accepted events/s: 400-event batches (the
// apiserver's default batch) of 1.4 KB and 20 KB events posted by
// 8×GOMAXPROCS concurrent clients through the receiver into the in-process broker,
// acks=all. The broker runs in the same process, so the figure is for
// receiver + broker sharing the CPUs GOMAXPROCS allows.
func BenchmarkAccepted(b *testing.B) {
	for _, client := range []string{"kafkago", "sarama"} {
		for _, size := range []int{1400, 20 << 10} {
			b.Run(fmt.Sprintf("client=%s/event=%dB", client, size), func(b *testing.B) { benchAccepted(b, client, size) })
		}
	}
}

func benchAccepted(b *testing.B, client string, size int) {
	srv := benchServer(b, client)
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = batchBody(400, size, i)
	}
	b.SetBytes(int64(len(bodies[0])))
	// Many apiservers post at once; the receiver's throughput, not
	// one client's round trip, is what is measured.
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			resp, err := http.Post(srv.URL+PathPrefix+"bench", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N*400)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkLatencyAt4000 paces one apiserver's default maximum (10
// batches/s of 400 Metadata events, 1.4 KB each) for b.N seconds and
// reports the p50 and p99 batch latency. Run with -benchtime=5x.
func BenchmarkLatencyAt4000(b *testing.B) {
	srv := benchServer(b, "kafkago")
	bodies := make([][]byte, 10)
	for i := range bodies {
		bodies[i] = batchBody(400, 1400, i)
	}
	var lat []time.Duration
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := range b.N * 10 {
		<-tick.C
		t0 := time.Now()
		resp, err := http.Post(srv.URL+PathPrefix+"bench", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// slowKafka stands in for a Kafka that takes 50ms per batch, so requests
// pile up: the receiver alone is measured, without the broker's memory.
type slowKafka struct{}

func (slowKafka) Produce(ctx context.Context, _ ...kafka.Record) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}
func (slowKafka) Close() error { return nil }

// BenchmarkOverloadMemory offers far more load than the receiver takes:
// 64 clients posting 400-event batches of 20 KB events (8 MiB bodies)
// against a slow Kafka, and reports the peak Go heap and the share of
// requests turned away with 503. The peak follows maxConcurrent (and
// maxBodyBytes), not the number of clients.
func BenchmarkOverloadMemory(b *testing.B) {
	for _, maxConc := range []int{4, 16} {
		b.Run(fmt.Sprintf("maxConcurrent=%d", maxConc), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxConcurrent = maxConc
			rc, err := New(cfg, slowKafka{}, mustMetrics(b, prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			mux := http.NewServeMux()
			rc.Routes(mux)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			body := batchBody(400, 20<<10, 0)
			var peak atomic.Uint64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				var ms runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > peak.Load() {
						peak.Store(ms.HeapInuse)
					}
				}
			}()
			var ok, busy atomic.Int64
			b.SetParallelism(64)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := http.Post(srv.URL+PathPrefix+"bench", "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					} else {
						busy.Add(1)
					}
				}
			})
			close(stop)
			<-sampled
			b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(busy.Load())/float64(ok.Load()+busy.Load()), "share-503")
		})
	}
}
