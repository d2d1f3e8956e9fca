// Package pipeline is the processor's record handler: it turns batches of
// raw apiserver events from the raw topic into processed events on the
// events topic, applying the audit policy, and sends records it cannot
// process to the DLQ topic with the reason, so that a poison record never
// stops its partition.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/enrich"
	"github.com/auditpipe/auditpipe/processor/internal/rawevent"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/processor/redact"
	"github.com/auditpipe/auditpipe/schemas"
)

// DefaultMaxEventBytes is the default limit for a processed event: under
// Kafka's default message.max.bytes (1 MiB) with room for the key, headers
// and batch overhead, and under CLS's 1 MB value limit.
const DefaultMaxEventBytes = 900 << 10

// dlqStage is the value of schemas.HeaderDLQStage on records we send to
// the DLQ.
const dlqStage = "processor"

// Policy decides what happens to an event; *policy.Policy implements it.
// Apply lowers the event in place when it is kept. Handle calls it from
// several goroutines at once for the records of a large batch (see
// forEach), as it already did for batches of different partitions.
type Policy interface {
	Apply(ev *schemas.Event) (policy.Decision, error)
}

// Config configures a Pipeline.
type Config struct {
	// Topics names the output topics (events, DLQ).
	Topics schemas.Topics
	// MaxEventBytes caps an encoded processed event. A larger event loses
	// its bodies; if it is still too large it goes to the DLQ. Default
	// DefaultMaxEventBytes.
	MaxEventBytes int
}

// WithDefaults fills zero fields with defaults.
func (c Config) WithDefaults() Config {
	if c.MaxEventBytes <= 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	return c
}

// Validate reports unusable settings.
func (c Config) Validate() error {
	if err := c.Topics.Validate(); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	if c.MaxEventBytes < 0 {
		return fmt.Errorf("pipeline: max event bytes %d is negative", c.MaxEventBytes)
	}
	return nil
}

// Pipeline is a kafka.Handler for the raw topic. It holds no state
// between batches, so any number of group members can run it.
type Pipeline struct {
	cfg     Config
	prod    kafka.Producer
	txn     kafka.Transactor
	fleet   atomic.Pointer[Fleet]
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	// detections counts rule matches (see detect.go).
	detections *DetectionMetrics
}

// Fleet is what the pipeline knows per cluster: the fleet default policy,
// per-cluster overrides and the registry entries that enrich events. It
// is replaced as a whole, so a batch sees one consistent version.
type Fleet struct {
	// Default applies to clusters without an override. Required.
	Default Policy
	// Clusters maps a cluster id to its own policy.
	Clusters map[string]Policy
	// Registry supplies cluster metadata; nil adds none.
	Registry *fleet.Registry
	// Detections are the detection rules per cluster; nil runs none.
	Detections *detect.Fleet
}

// PolicyFor returns the policy of cluster.
func (f *Fleet) PolicyFor(cluster string) Policy {
	if pol, ok := f.Clusters[cluster]; ok && pol != nil {
		return pol
	}
	return f.Default
}

var _ kafka.Handler = (*Pipeline)(nil)

// Option changes a Pipeline's defaults.
type Option func(*Pipeline)

// WithClock sets the clock that stamps Pipeline.ProcessedAt (default
// time.Now), so tests get deterministic output. Handle calls it from
// several goroutines at once.
func WithClock(now func() time.Time) Option {
	return func(p *Pipeline) { p.now = now }
}

// WithTransactions makes each batch one Kafka transaction: its output
// records and the input offset after it are committed together by tx
// (exactly-once for read-committed readers). The producer given to New
// is then unused and may be nil.
func WithTransactions(tx kafka.Transactor) Option {
	return func(p *Pipeline) { p.txn = tx }
}

// PrepareAssigned implements kafka.AssignmentPreparer: with transactions,
// newly assigned input partitions are fenced before their offsets are
// read, so a killed previous owner's open transaction is aborted now
// instead of holding them until it times out.
func (p *Pipeline) PrepareAssigned(ctx context.Context, topic string, partitions []int32) error {
	if p.txn == nil {
		return nil
	}
	return p.txn.Fence(ctx, topic, partitions...)
}

// CommitsOffsets implements kafka.OffsetOwner: with transactions, every
// batch's input offsets are committed in its transaction, and the group
// must not commit them outside one.
func (p *Pipeline) CommitsOffsets() bool { return p.txn != nil }

// New returns a Pipeline that applies pol and writes with prod. metrics
// may be nil (unregistered metrics), logger too (logs are discarded).
func New(cfg Config, pol Policy, prod kafka.Producer, metrics *Metrics, logger *slog.Logger, opts ...Option) (*Pipeline, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var probe Pipeline
	for _, o := range opts {
		o(&probe)
	}
	if prod == nil && probe.txn == nil {
		return nil, errors.New("pipeline: no producer")
	}
	if pol == nil {
		return nil, errors.New("pipeline: no policy")
	}
	if metrics == nil {
		metrics, _ = NewMetrics(nil) // registers nothing: cannot fail
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{cfg: cfg, prod: prod, metrics: metrics, log: logger, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.fleet.Store(&Fleet{Default: pol})
	return p, nil
}

// SetPolicy replaces the fleet default policy for the batches that start
// after it returns; a batch in flight finishes with the policy it started
// with. Per-cluster overrides and the registry stay.
func (p *Pipeline) SetPolicy(pol Policy) error {
	if pol == nil {
		return errors.New("pipeline: set policy: nil policy")
	}
	f := *p.fleet.Load()
	f.Default = pol
	p.fleet.Store(&f)
	return nil
}

// SetFleet replaces the policies and the registry for the batches that
// start after it returns, as SetPolicy does.
func (p *Pipeline) SetFleet(f Fleet) error {
	if f.Default == nil {
		return errors.New("pipeline: set fleet: no default policy")
	}
	for id, pol := range f.Clusters {
		if pol == nil {
			return fmt.Errorf("pipeline: set fleet: cluster %s: nil policy", id)
		}
	}
	p.fleet.Store(&f)
	return nil
}

// Fleet returns the fleet configuration in force.
func (p *Pipeline) Fleet() Fleet { return *p.fleet.Load() }

// Handle processes a batch from the raw topic. It writes every output
// record of the batch with one Produce call and returns nil once the
// broker acknowledged them all; a failed Produce returns an error so that
// the group redelivers the batch (downstream de-duplicates on cluster,
// auditID, stage and content hash).
func (p *Pipeline) Handle(ctx context.Context, b kafka.Batch) error {
	start := time.Now()
	defer func() { p.metrics.BatchDuration.Observe(time.Since(start).Seconds()) }()

	fl := p.fleet.Load()
	results := make([]result, len(b.Records))
	forEach(len(b.Records), func(i int) {
		r := &results[i]
		r.rec, r.outcome = p.process(fl, b, b.Records[i], &r.alerts, &r.redactionFailures)
	})
	out := make([]kafka.Record, 0, len(b.Records))
	var counts [3]int // accepted, dropped, dlq
	var bytesIn, bytesOut, redactionFailures int
	for i, r := range results {
		bytesIn += len(b.Records[i].Value)
		redactionFailures += r.redactionFailures
		// A record's alerts go before its event, as they were found.
		out = append(out, r.alerts...)
		switch r.outcome {
		case OutcomeAccepted:
			counts[0]++
		case OutcomeDroppedPolicy:
			counts[1]++
			continue
		case OutcomeDLQ:
			counts[2]++
		}
		bytesOut += len(r.rec.Value)
		out = append(out, r.rec)
	}
	switch {
	case p.txn != nil && len(b.Records) > 0:
		// Even a batch the policy dropped entirely commits its offsets
		// here: the group must not commit them outside a transaction.
		in := kafka.InputOffset{Topic: b.Topic, Partition: b.Partition, Next: b.Records[len(b.Records)-1].Offset + 1}
		if err := p.txn.Commit(ctx, in, out...); err != nil {
			return fmt.Errorf("commit %d records for %s/%d in a transaction: %w", len(out), b.Topic, b.Partition, err)
		}
	case len(out) > 0:
		if err := p.prod.Produce(ctx, out...); err != nil {
			return fmt.Errorf("produce %d records for %s/%d: %w", len(out), b.Topic, b.Partition, err)
		}
	}
	p.metrics.Records.WithLabelValues(OutcomeAccepted).Add(float64(counts[0]))
	p.metrics.Records.WithLabelValues(OutcomeDroppedPolicy).Add(float64(counts[1]))
	p.metrics.Records.WithLabelValues(OutcomeDLQ).Add(float64(counts[2]))
	p.metrics.Bytes.WithLabelValues("in").Add(float64(bytesIn))
	p.metrics.Bytes.WithLabelValues("out").Add(float64(bytesOut))
	p.metrics.RedactionFailures.Add(float64(redactionFailures))
	return nil
}

// result is what process made of one record of a batch.
type result struct {
	rec               kafka.Record
	outcome           string
	alerts            []kafka.Record
	redactionFailures int
}

// minParallel is the fewest records per goroutine worth starting one
// for: below it, the handoff costs about as much as it saves.
const minParallel = 32

// forEach calls fn(i) for every i in [0, n), on up to GOMAXPROCS
// goroutines, each taking one contiguous share, and returns when all
// calls have returned. A batch's records are independent until they are
// written, and Handle is otherwise one goroutine per partition: while
// one partition's batch waits for the broker, its CPU work would leave
// cores idle.
func forEach(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/minParallel)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// process turns one raw record into its output record, or none when the
// policy drops it; alert records of the event's detections are appended
// to alerts, whatever the policy does with the event. Bodies redaction
// had to replace whole are added to redactionFailures.
func (p *Pipeline) process(fl *Fleet, b kafka.Batch, rec kafka.Record, alerts *[]kafka.Record, redactionFailures *int) (kafka.Record, string) {
	origin := schemas.Origin{Topic: b.Topic, Partition: b.Partition, Offset: rec.Offset}
	cluster := string(rec.HeaderValue(schemas.HeaderCluster))
	if cluster == "" {
		return p.dlq(rec, origin, "missing header "+schemas.HeaderCluster), OutcomeDLQ
	}
	receivedAt := rec.Time
	if v := rec.HeaderValue(schemas.HeaderReceivedAt); v != nil {
		t, err := time.Parse(time.RFC3339Nano, string(v))
		if err != nil {
			return p.dlq(rec, origin, fmt.Sprintf("bad header %s: %v", schemas.HeaderReceivedAt, err)), OutcomeDLQ
		}
		receivedAt = t
	}
	doc, ev, reason := rawevent.Parse(rec.Value)
	if reason != "" {
		return p.dlq(rec, origin, reason), OutcomeDLQ
	}
	pl := schemas.Pipeline{Cluster: cluster, Source: string(rec.HeaderValue(schemas.HeaderSource)), Origin: origin}
	detections := p.detect(fl, &pl, &ev, alerts) // before the policy lowers the level
	originalLevel := ev.Level
	d, err := fl.PolicyFor(cluster).Apply(&ev)
	if err != nil {
		return p.dlq(rec, origin, "policy: "+err.Error()), OutcomeDLQ
	}
	if d.Drop {
		p.log.Debug("event dropped by policy", "cluster", cluster, "auditID", ev.AuditID, "stage", ev.Stage,
			"reason", string(d.Reason), "rule", d.Rule, "origin", originString(origin))
		return kafka.Record{}, OutcomeDroppedPolicy
	}
	// The identity is of the raw bytes, not of what the policy left
	// (decision 0012).
	hash, err := ContentHash(rec.Value)
	if err != nil {
		return p.dlq(rec, origin, err.Error()), OutcomeDLQ
	}
	// What the rules saw of the pipeline (cluster, source, origin), plus
	// what is known now.
	pl.ContentHash = hash
	pl.SchemaVersion = schemas.SchemaVersion
	pl.ReceivedAt = receivedAt.UTC()
	pl.ProcessedAt = p.now().UTC()
	pl.OriginalLevel = originalLevel
	pl.Cut = doc.Cut()
	pl.Detections = detections
	pe := schemas.ProcessedEvent{Event: ev, Pipeline: pl}
	// Redaction runs after the policy (which may already have dropped
	// the bodies) and before anything is encoded, whatever the level.
	pe.Pipeline.Redacted = redact.Event(&pe.Event)
	*redactionFailures += redact.FailedClosed(pe.Pipeline.Redacted)
	enrich.Fill(&pe.Pipeline, &pe.Event)
	if c, ok := fl.Registry.Cluster(cluster); ok {
		pe.Pipeline.ClusterInfo = enrich.Cluster(c, true)
	}
	// The output is the event's own JSON, edited: the typed view above
	// only decided the edits.
	value, err := doc.Encode(&pe)
	if err != nil {
		return p.dlq(rec, origin, "encode processed event: "+err.Error()), OutcomeDLQ
	}
	if len(value) > p.cfg.MaxEventBytes {
		value, reason = p.truncate(doc, pe, len(value))
		if reason != "" {
			return p.dlq(rec, origin, reason), OutcomeDLQ
		}
	}
	return kafka.Record{
		Topic: p.cfg.Topics.Events,
		Key:   []byte(cluster),
		Value: value,
		Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte(cluster)},
			{Key: schemas.HeaderSource, Value: []byte(pe.Pipeline.Source)},
			{Key: schemas.HeaderReceivedAt, Value: []byte(pe.Pipeline.ReceivedAt.Format(time.RFC3339Nano))},
			{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
		},
	}, OutcomeAccepted
}

// truncate drops the bodies of an event that is too large, lowering it to
// Metadata as the apiserver's truncating backend does; bodies are nearly
// all of a large event. It returns a DLQ reason when even that is too
// large.
func (p *Pipeline) truncate(doc *rawevent.Event, pe schemas.ProcessedEvent, size int) ([]byte, string) {
	pe.RequestObject, pe.ResponseObject = nil, nil
	pe.Level = policy.LevelMetadata
	// Encode adds the apiserver's truncation annotation.
	pe.Pipeline.Truncated = true
	value, err := doc.Encode(&pe)
	if err != nil {
		return nil, "encode processed event: " + err.Error()
	}
	if len(value) > p.cfg.MaxEventBytes {
		return nil, fmt.Sprintf("too large: %d bytes after dropping bodies, limit %d", len(value), p.cfg.MaxEventBytes)
	}
	p.log.Info("event over size limit, bodies dropped", "cluster", pe.Pipeline.Cluster, "auditID", pe.AuditID,
		"bytes", size, "limit", p.cfg.MaxEventBytes, "origin", originString(pe.Pipeline.Origin))
	return value, ""
}

// dlq returns the DLQ record for rec: the original bytes and headers, and
// why and where it failed.
func (p *Pipeline) dlq(rec kafka.Record, origin schemas.Origin, reason string) kafka.Record {
	o := originString(origin)
	p.log.Warn("record sent to DLQ", "reason", reason, "origin", o,
		"cluster", string(rec.HeaderValue(schemas.HeaderCluster)))
	headers := make([]kafka.Header, 0, len(rec.Headers)+3)
	for _, h := range rec.Headers {
		switch h.Key {
		case schemas.HeaderDLQReason, schemas.HeaderDLQStage, schemas.HeaderDLQOrigin:
			continue // a record replayed from the DLQ gets fresh ones
		}
		headers = append(headers, h)
	}
	headers = append(headers,
		kafka.Header{Key: schemas.HeaderDLQReason, Value: []byte(reason)},
		kafka.Header{Key: schemas.HeaderDLQStage, Value: []byte(dlqStage)},
		kafka.Header{Key: schemas.HeaderDLQOrigin, Value: []byte(o)},
	)
	return kafka.Record{Topic: p.cfg.Topics.DLQ, Key: rec.Key, Value: rec.Value, Headers: headers}
}

func originString(o schemas.Origin) string {
	return o.Topic + "/" + strconv.FormatInt(int64(o.Partition), 10) + "/" + strconv.FormatInt(o.Offset, 10)
}
