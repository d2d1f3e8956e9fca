package bench

// Adapter for the producer stage: the webhook receiver on a loopback HTTP
// server, publishing with kafka-go as deploy/local/allinone wires it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/producer/webhook"
)

type producerLeg struct {
	k    *kafkaEnv
	prod kafka.Producer
}

func newProducerLeg(_ context.Context, e *env) (leg, error) {
	k, err := startKafka(e)
	if err != nil {
		return nil, err
	}
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-producer"})
	if err != nil {
		k.close()
		return nil, fmt.Errorf("kafka-go producer: %w", err)
	}
	return &producerLeg{k: k, prod: prod}, nil
}

func (l *producerLeg) close() error {
	err := l.prod.Close()
	l.k.close()
	return err
}

// eventList encodes events as the apiserver's webhook backend sends them.
func eventList(events []Event) []byte {
	var b bytes.Buffer
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
	for i, ev := range events {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(ev.JSON)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// batches splits events into batches of the configured size.
func batches(events []Event, size int) [][]Event {
	var out [][]Event
	for i := 0; i < len(events); i += size {
		out = append(out, events[i:min(i+size, len(events))])
	}
	return out
}

func (l *producerLeg) round(ctx context.Context, r int) (Round, error) {
	o := l.k.opts
	topics, _, err := l.k.topics(ctx, r)
	if err != nil {
		return Round{}, err
	}
	// kafka-go learns of a new topic at its next metadata refresh (up to a
	// second); one unmeasured record makes it known before the clock starts.
	probe := rawRecords(topics.Raw, "probe", l.k.gen.Next(1), time.Now())
	if err := l.prod.Produce(ctx, probe...); err != nil {
		return Round{}, fmt.Errorf("probe the raw topic: %w", err)
	}
	events := l.k.gen.Next(o.Events)
	m := &meter{}
	if l.k.unit.Variant == VariantBaseline {
		// The same records the receiver would write, in the same batch
		// sizes, through the same producer: Kafka's share of the stage.
		var work []kafkaRecords
		for _, b := range batches(events, o.BatchSize) {
			work = append(work, kafkaRecords{records: rawRecords(topics.Raw, "bench", b, time.Now()), bytes: int64(len(eventList(b)))})
		}
		err := parallel(o.Concurrency, len(work), m, func(i int) (int, int64, error) {
			return len(work[i].records), work[i].bytes, l.prod.Produce(ctx, work[i].records...)
		})
		return m.round(), err
	}

	cfg := webhook.DefaultConfig()
	cfg.Topics = topics
	metrics, err := webhook.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return Round{}, err
	}
	rc, err := webhook.New(cfg, l.prod, metrics, l.k.logger)
	if err != nil {
		return Round{}, err
	}
	mux := http.NewServeMux()
	rc.Routes(mux)
	url, stop, err := serve(mux)
	if err != nil {
		return Round{}, err
	}
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}}
	bs := batches(events, o.BatchSize)
	bodies := make([][]byte, len(bs))
	for i, b := range bs {
		bodies[i] = eventList(b)
	}
	err = parallel(o.Concurrency, len(bodies), m, func(i int) (int, int64, error) {
		return len(bs[i]), int64(len(bodies[i])), post(ctx, client, url+webhook.PathPrefix+"bench?timeout=30s", bodies[i], len(bs[i]))
	})
	return m.round(), err
}

type kafkaRecords struct {
	records []kafka.Record
	bytes   int64
}

// parallel runs n jobs on conc workers, timing each job as one latency
// sample, and stops at the first error.
func parallel(conc, n int, m *meter, job func(i int) (events int, bytes int64, err error)) error {
	next := make(chan int)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		failed  = make(chan struct{})
	)
	m.begin()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				start := time.Now()
				ev, b, err := job(i)
				if err != nil {
					errOnce.Do(func() { first = err; close(failed) })
					return
				}
				m.add(ev, b, time.Since(start))
			}
		}()
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-failed:
			break loop
		}
	}
	close(next)
	wg.Wait()
	m.finish()
	return first
}

// post sends one EventList and checks that every event was accepted.
func post(ctx context.Context, client *http.Client, url string, body []byte, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, data)
	}
	var ans struct {
		Accepted int `json:"accepted"`
	}
	if err := json.Unmarshal(data, &ans); err != nil || ans.Accepted != want {
		return fmt.Errorf("POST %s: accepted %d of %d events (%s)", url, ans.Accepted, want, data)
	}
	return nil
}

// serve runs h on a loopback port until stop is called.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
