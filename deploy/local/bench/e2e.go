package bench

// Adapter for the whole pipeline: deploy/local/allinone (webhook → raw →
// processor → events → consumer → local store → query API), and its
// baseline, the same three Kafka hops with no processing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/deploy/local/allinone"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/producer/webhook"
	"github.com/auditpipe/auditpipe/schemas"
)

func newE2ELeg(ctx context.Context, e *env) (leg, error) {
	if e.unit.Variant == VariantBaseline {
		return newE2EBaseline(ctx, e)
	}
	return newE2EStage(ctx, e)
}

// e2eStage drives a whole all-in-one pipeline. Every webhook POST goes to
// its own cluster id, so "all events of this POST are queryable" is one
// cheap count query per POST (the store indexes cluster).
type e2eStage struct {
	e      *env
	p      *allinone.Pipeline
	client *http.Client
	// restoreMemoryLimit undoes the memory limit `make run` sets, which
	// this unit applies too (the harness's own memory counts against it).
	restoreMemoryLimit func()
}

func newE2EStage(ctx context.Context, e *env) (leg, error) {
	cfg := allinone.DefaultConfig()
	cfg.DataDir = filepath.Join(e.dir, "allinone")
	cfg.Cluster = "bench"
	cfg.Store.Engine = e.opts.StoreEngine
	cfg.Kafka.Listen = "127.0.0.1:0"
	cfg.Kafka.Brokers = e.brokers
	cfg.Kafka.Partitions = e.opts.Partitions
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Topics = schemas.Topics{Raw: e.name(0, "raw"), Events: e.name(0, "events"), DLQ: e.name(0, "dlq")}
	restore := allinone.ApplyMemoryLimit(cfg, e.logger)
	p, err := allinone.Start(ctx, cfg, e.logger)
	if err != nil {
		restore()
		return nil, fmt.Errorf("start all-in-one: %w", err)
	}
	l := &e2eStage{e: e, p: p, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, restoreMemoryLimit: restore}
	// Wait until both consumer groups have joined: one event all the way
	// through, so that no round measures a group join.
	probe := "probe-" + e.nonce
	evs := e.gen.Next(1)
	deadline := time.Now().Add(e.opts.RoundTimeout)
	if err := post(ctx, l.client, p.WebhookURL()+webhook.PathPrefix+probe, eventList(evs), 1); err != nil {
		_ = l.close()
		return nil, err
	}
	for {
		n, err := l.count(ctx, probe)
		if err == nil && n == 1 {
			return l, nil
		}
		if time.Now().After(deadline) {
			_ = l.close()
			return nil, fmt.Errorf("probe event not queryable after %s (last error: %v)", e.opts.RoundTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *e2eStage) close() error {
	defer l.restoreMemoryLimit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.p.Shutdown(ctx)
}

// count asks the query API how many events cluster has.
func (l *e2eStage) count(ctx context.Context, cluster string) (int, error) {
	u := l.p.APIURL() + "/api/v1/events?limit=1&cluster=" + url.QueryEscape(cluster)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var body struct {
		Total int `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	return body.Total, nil
}

// e2eBatch is one POST and what became of it.
type e2eBatch struct {
	cluster string
	body    []byte
	want    int
	sent    atomic.Int64 // unix ns when the POST started; 0 before
	seen    int          // events queryable so far (poller only)
}

func (l *e2eStage) round(ctx context.Context, r int) (Round, error) {
	o := l.e.opts
	var bs []*e2eBatch
	for i, b := range batches(l.e.gen.Next(o.Events), o.BatchSize) {
		bs = append(bs, &e2eBatch{cluster: fmt.Sprintf("b%s-r%d-%d", l.e.nonce, r, i), body: eventList(b), want: len(b)})
	}
	m := &meter{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sendErr := make(chan error, 1)
	send := func(b *e2eBatch) error {
		b.sent.Store(time.Now().UnixNano())
		return post(ctx, l.client, l.p.WebhookURL()+webhook.PathPrefix+b.cluster+"?timeout=30s", b.body, b.want)
	}
	m.begin()
	go func() {
		if l.e.unit.Variant == VariantPaced {
			sendErr <- l.paced(ctx, bs, send)
			return
		}
		sendErr <- parallel(o.Concurrency, len(bs), &meter{}, func(i int) (int, int64, error) {
			return bs[i].want, 0, send(bs[i])
		})
	}()

	// Poll until every event is queryable. Each newly visible event is one
	// latency sample: now minus the start of its POST.
	pending := len(bs)
	var firstSeen, lastSeen time.Time // when the first and the last events became queryable
	firstEvents := 0                  // how many at firstSeen
	for pending > 0 {
		select {
		case err := <-sendErr:
			if err != nil {
				return Round{}, err
			}
		case <-ctx.Done():
			return Round{}, fmt.Errorf("%d of %d batches not queryable: %w", pending, len(bs), ctx.Err())
		default:
		}
		for _, b := range bs {
			sent := b.sent.Load()
			if sent == 0 || b.seen == b.want {
				continue
			}
			n, err := l.count(ctx, b.cluster)
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				return Round{}, err
			}
			if n > b.seen {
				now := time.Now()
				if firstSeen.IsZero() {
					firstSeen, firstEvents = now, n
				}
				lastSeen = now
				lat := time.Duration(now.UnixNano() - sent)
				samples := make([]time.Duration, n-b.seen)
				for i := range samples {
					samples[i] = lat
				}
				m.add(n-b.seen, int64(len(b.body))*int64(n-b.seen)/int64(b.want), samples...)
				b.seen = n
				if n >= b.want {
					pending--
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.finish()
	rd := m.round()
	if span := lastSeen.Sub(firstSeen); l.e.unit.Variant == VariantPaced && rd.Events > firstEvents && span > 0 {
		// The paced rate is the rate at which events became queryable,
		// from the first to the last: the offered rate when the pipeline
		// keeps up, its drain rate when it does not. Counting from the
		// first POST instead adds one end-to-end latency to the few
		// seconds of a round (10,000 events at 2,000/s in 4.95 s became
		// "1,887/s" with a 350 ms latency although nothing fell behind).
		// Seconds is scaled so that Events/Seconds is that rate; CPU
		// stays over the whole round and all its events.
		rd.Seconds = span.Seconds() * float64(rd.Events) / float64(rd.Events-firstEvents)
	}
	return rd, nil
}

// paced starts one POST every batch/rate seconds, each on its own
// goroutine, like apiservers that send at their own pace whatever the
// receiver's backlog.
func (l *e2eStage) paced(ctx context.Context, bs []*e2eBatch, send func(*e2eBatch) error) error {
	interval := time.Duration(float64(time.Second) * float64(l.e.opts.BatchSize) / float64(l.e.opts.PacedRate))
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(bs))
	for i, b := range bs {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(b); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// sentHeader carries the produce time through the baseline's hops;
// roundHeader tells the final consumer which round a record belongs to.
const (
	sentHeader  = "auditbench.sent-unix-nano"
	roundHeader = "auditbench.round"
)

// e2eBaseline moves the same records through the same three hops with the
// same clients and no processing: kafka-go producer → raw → sarama group
// passing records through with a sarama producer → events → sarama group
// that only notes when each record arrived.
type e2eBaseline struct {
	k      *kafkaEnv
	prod   kafka.Producer // the webhook's client
	pass   kafka.Producer // the processor's client
	groups []kafka.GroupConsumer
	raw    string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	cur    atomic.Pointer[baselineRound]
}

type baselineRound struct {
	round int
	want  int
	m     *meter
	mu    sync.Mutex
	n     int
	done  chan struct{}
}

func newE2EBaseline(ctx context.Context, e *env) (_ leg, err error) {
	k, err := startKafka(e)
	if err != nil {
		return nil, err
	}
	l := &e2eBaseline{k: k}
	defer func() {
		if err != nil {
			_ = l.close()
		}
	}()
	topics, _, err := k.topics(ctx, 0)
	if err != nil {
		return nil, err
	}
	l.raw = topics.Raw
	if l.prod, err = kafkago.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-producer"}); err != nil {
		return nil, err
	}
	if l.pass, err = saramakafka.NewProducer(kafka.ProducerConfig{Brokers: k.brokers, ClientID: "auditbench-processor"}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	for _, g := range []struct {
		topic string
		h     kafka.Handler
	}{{topics.Raw, passThrough(l.pass, topics.Events)}, {topics.Events, kafka.HandlerFunc(l.arrive)}} {
		gc, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: k.brokers, Group: g.topic + "-group", Topics: []string{g.topic}, ClientID: "auditbench", MaxBatch: e.opts.GroupBatch})
		if err != nil {
			return nil, err
		}
		l.groups = append(l.groups, gc)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			kafka.Supervise(runCtx, gc, g.h, time.Second, e.logger)
		}()
	}
	// A probe through both hops, so that no round measures a group join.
	if _, err := l.run(ctx, -1, e.gen.Next(1)); err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	return l, nil
}

func (l *e2eBaseline) arrive(_ context.Context, b kafka.Batch) error {
	now := time.Now()
	cur := l.cur.Load()
	if cur == nil {
		return nil
	}
	var samples []time.Duration
	var bytes int64
	for _, r := range b.Records {
		if string(r.HeaderValue(roundHeader)) != strconv.Itoa(cur.round) {
			continue
		}
		sent, err := strconv.ParseInt(string(r.HeaderValue(sentHeader)), 10, 64)
		if err != nil {
			return fmt.Errorf("record without %s: %w", sentHeader, err)
		}
		samples = append(samples, now.Sub(time.Unix(0, sent)))
		bytes += int64(len(r.Value))
	}
	cur.m.add(len(samples), bytes, samples...)
	cur.mu.Lock()
	cur.n += len(samples)
	if cur.n >= cur.want && cur.done != nil {
		cur.m.finish()
		close(cur.done)
		cur.done = nil
	}
	cur.mu.Unlock()
	return nil
}

func (l *e2eBaseline) round(ctx context.Context, r int) (Round, error) {
	return l.run(ctx, r, l.k.gen.Next(l.k.opts.Events))
}

func (l *e2eBaseline) run(ctx context.Context, r int, events []Event) (Round, error) {
	o := l.k.opts
	cur := &baselineRound{round: r, want: len(events), m: &meter{}, done: make(chan struct{})}
	done := cur.done
	l.cur.Store(cur)
	defer l.cur.Store(nil)
	bs := batches(events, o.BatchSize)
	cur.m.begin()
	errc := make(chan error, 1)
	go func() {
		errc <- parallel(o.Concurrency, len(bs), &meter{}, func(i int) (int, int64, error) {
			recs := rawRecords(l.raw, "bench", bs[i], time.Now())
			sent := []byte(strconv.FormatInt(time.Now().UnixNano(), 10))
			for j := range recs {
				recs[j].Headers = append(recs[j].Headers, kafka.Header{Key: sentHeader, Value: sent}, kafka.Header{Key: roundHeader, Value: []byte(strconv.Itoa(r))})
			}
			return len(recs), 0, l.prod.Produce(ctx, recs...)
		})
	}()
	select {
	case err := <-errc:
		if err != nil {
			return Round{}, err
		}
		select {
		case <-done:
		case <-ctx.Done():
			return Round{}, fmt.Errorf("records not consumed: %w", ctx.Err())
		}
	case <-done:
	case <-ctx.Done():
		return Round{}, fmt.Errorf("records not consumed: %w", ctx.Err())
	}
	return cur.m.round(), nil
}

func (l *e2eBaseline) close() error {
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	var errs []error
	for _, g := range l.groups {
		errs = append(errs, g.Close())
	}
	for _, p := range []kafka.Producer{l.prod, l.pass} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	l.k.close()
	return errors.Join(errs...)
}
