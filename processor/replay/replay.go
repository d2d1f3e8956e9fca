// Package replay re-reads the raw topic (the system of record) for a time
// or offset range, optionally for chosen clusters, through a chosen audit
// policy, into a Target: another topic, the local store, CLS. It answers
// "we changed the policy last week, re-run it" and, with a dry run, "what
// would this policy keep, per rule and per cluster".
//
// Records are processed by the processor's own pipeline
// (processor/pipeline), never by a re-implementation, so a replay with the
// live policy produces what the live processor produced. Replay reads
// partitions directly (no consumer group), so it never touches the live
// groups' offsets; it fixes the end of every partition's range when it
// starts, and stops there. Progress is a checkpoint file holding, per
// partition, the next offset to process, written atomically only after the
// target acknowledged every record below it: an interrupted replay resumes
// without gaps, and repeats at most the batch that was in flight when the
// process died (duplicates a target removes by cluster, auditID, stage and
// content hash).
// The output is deterministic: the pipeline's clock is the raw record's
// timestamp, so a repeated record is byte-for-byte the same.
package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
)

// Internal names of the pipeline's output topics: the pipeline tags each
// output record with one of them, and replay routes the record to Target
// or DLQ accordingly. Targets choose their own destination.
const (
	eventsOut = "auditpipe.replay.events"
	dlqOut    = "auditpipe.replay.dlq"
	alertsOut = "auditpipe.replay.alerts"
)

// writeTimeout bounds the write of the batch in flight when a replay is
// interrupted: it is finished (so the checkpoint can move past it) rather
// than abandoned halfway.
const writeTimeout = 2 * time.Minute

// Config describes a replay. The zero values of From, To and Offsets mean
// the whole retained log.
type Config struct {
	// Topic is the raw topic. Required.
	Topic string
	// From and To bound the window by record timestamp: records at or
	// after From and before To. Zero means unbounded.
	From, To time.Time
	// Offsets, when not empty, replaces From and To: the exact offset
	// range of each listed partition; other partitions are not read.
	Offsets map[int32]kafka.OffsetRange
	// Clusters, when not empty, limits the replay to records whose
	// auditpipe.cluster header is one of them.
	Clusters []string
	// PolicyID identifies the policy (for example its file name and a
	// hash of its bytes); a checkpoint written with another PolicyID is
	// not resumed.
	PolicyID string
	// RulesID identifies the detection rules (like PolicyID); a
	// checkpoint written with other rules is not resumed.
	RulesID string
	// MaxEventBytes is the pipeline's size limit; see pipeline.Config.
	MaxEventBytes int
	// Checkpoint is the checkpoint file. Required unless DryRun. When it
	// exists the replay resumes from it.
	Checkpoint string
	// DryRun processes everything and counts, but writes nothing: no
	// target, no checkpoint.
	DryRun bool
	// Parallelism is how many partitions are processed at once. Default
	// GOMAXPROCS.
	Parallelism int
}

// Validate reports missing or contradictory settings.
func (c Config) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: required"))
	}
	if !c.From.IsZero() && !c.To.IsZero() && !c.From.Before(c.To) {
		errs = append(errs, fmt.Errorf("from %s is not before to %s", c.From.Format(time.RFC3339), c.To.Format(time.RFC3339)))
	}
	if len(c.Offsets) > 0 && (!c.From.IsZero() || !c.To.IsZero()) {
		errs = append(errs, errors.New("offsets and a time window are exclusive"))
	}
	for p, r := range c.Offsets {
		if r.Start < 0 || r.End < r.Start {
			errs = append(errs, fmt.Errorf("offsets: partition %d: bad range [%d, %d)", p, r.Start, r.End))
		}
	}
	if !c.DryRun && c.Checkpoint == "" {
		errs = append(errs, errors.New("checkpoint: required unless dry run"))
	}
	if c.MaxEventBytes < 0 {
		errs = append(errs, fmt.Errorf("max event bytes %d is negative", c.MaxEventBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("replay config: %w", err)
	}
	return nil
}

// spec is the identity of a replay stored in its checkpoint.
func (c Config) spec() string {
	var b strings.Builder
	if len(c.Offsets) > 0 {
		b.WriteString("offsets=")
		for _, p := range slices.Sorted(maps.Keys(c.Offsets)) {
			r := c.Offsets[p]
			fmt.Fprintf(&b, "%d:%d-%d,", p, r.Start, r.End)
		}
	} else {
		fmt.Fprintf(&b, "from=%s to=%s", timeSpec(c.From), timeSpec(c.To))
	}
	cl := slices.Clone(c.Clusters)
	slices.Sort(cl)
	fmt.Fprintf(&b, " clusters=%s policy=%s maxEventBytes=%d", strings.Join(cl, ","), c.PolicyID, c.MaxEventBytes)
	if c.RulesID != "" {
		// Only when set, so checkpoints of replays without rules resume.
		fmt.Fprintf(&b, " rules=%s", c.RulesID)
	}
	return b.String()
}

func timeSpec(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Deps are a replay's outside world.
type Deps struct {
	// Reader reads the raw topic. Required.
	Reader kafka.PartitionReader
	// Policy is applied to every cluster without an entry in
	// ClusterPolicies. Required.
	Policy pipeline.Policy
	// ClusterPolicies overrides Policy per cluster.
	ClusterPolicies map[string]pipeline.Policy
	// Target receives processed events. Required unless DryRun.
	Target Target
	// DLQ receives the records the pipeline sends to its DLQ (with the
	// reason in headers). Nil: they are counted, not written.
	DLQ Target
	// Detections are the detection rules evaluated on every record, as
	// the live processor does: replayed events carry
	// auditpipe.detections and Stats.Detections counts matches per rule.
	// Nil evaluates none.
	Detections *detect.Fleet
	// Alerts receives one schemas.Alert record per match (as the
	// processor writes to audit.alerts). Nil: matches are counted, no
	// alert is written, because replaying history must not page anyone
	// (decision 0016).
	Alerts Target
	// PipelineOptions are passed to pipeline.New (before replay's own
	// clock option).
	PipelineOptions []pipeline.Option
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Replay is one replay run. Create it with New, run it with Run; Progress
// may be called concurrently, e.g. by a progress printer.
type Replay struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	clusters map[string]bool

	mu    sync.Mutex // guards state while it is updated and saved
	state *checkpoint

	// progress counters, read by Progress
	startedNs  atomic.Int64 // Run's start, unix ns; 0 before Run
	totalOffs  atomic.Int64 // offsets in all ranges
	doneOffs   atomic.Int64 // offsets below Next, all partitions
	resumeOffs atomic.Int64 // doneOffs when this run started
	readBytes  atomic.Int64
	eventsOut  atomic.Int64
}

// New checks cfg and deps and returns a Replay.
func New(cfg Config, deps Deps) (*Replay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Reader == nil:
		return nil, errors.New("replay: no reader")
	case deps.Policy == nil:
		return nil, errors.New("replay: no policy")
	case !cfg.DryRun && deps.Target == nil:
		return nil, errors.New("replay: no target")
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = runtime.GOMAXPROCS(0)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replay{cfg: cfg, deps: deps, log: deps.Logger}
	if len(cfg.Clusters) > 0 {
		r.clusters = map[string]bool{}
		for _, c := range cfg.Clusters {
			r.clusters[c] = true
		}
	}
	return r, nil
}

// Summary is the result of Run.
type Summary struct {
	// Stats count everything the replay processed, including earlier
	// runs of a resumed replay.
	Stats
	// Ranges are the fixed offset ranges per partition.
	Ranges map[int32]kafka.OffsetRange
	// Resumed is true when the run continued from a checkpoint, Complete
	// when every range was processed.
	Resumed, Complete bool
	// Duration is the time of this run.
	Duration time.Duration
}

// Run plans the ranges (or loads them from the checkpoint) and processes
// every partition to the end of its range. When ctx is canceled it
// finishes the batches in flight, saves the checkpoint and returns an
// error wrapping ctx's; Run again (with a new Replay) to resume.
func (r *Replay) Run(ctx context.Context) (Summary, error) {
	started := time.Now()
	resumed, err := r.plan(ctx)
	if err != nil {
		return Summary{}, err
	}
	r.resumeOffs.Store(r.doneOffs.Load())
	r.startedNs.Store(started.UnixNano())
	if resumed {
		r.log.Info("replay resumed from checkpoint", "checkpoint", r.cfg.Checkpoint, "done_offsets", r.doneOffs.Load(), "total_offsets", r.totalOffs.Load())
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, r.cfg.Parallelism)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(r.state.Partitions)) {
		st := r.state.Partitions[p]
		if st.Next >= st.End {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-runCtx.Done():
				return
			}
			defer func() { <-sem }()
			if err := r.runPartition(runCtx, p, kafka.OffsetRange{Start: st.Next, End: st.End}); err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				errMu.Unlock()
				cancel() // one failed partition stops the replay
			}
		}()
	}
	wg.Wait()

	sum := r.summary(resumed, started)
	// A failing partition cancels the others; their context errors are
	// consequences, not causes.
	var causes []error
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			causes = append(causes, err)
		}
	}
	if err := errors.Join(causes...); err != nil {
		return sum, fmt.Errorf("replay %s: %w", r.cfg.Topic, err)
	}
	if err := ctx.Err(); err != nil && !sum.Complete {
		return sum, fmt.Errorf("replay %s interrupted (run it again to resume from %s): %w", r.cfg.Topic, r.cfg.Checkpoint, err)
	}
	if err := errors.Join(errs...); err != nil {
		return sum, fmt.Errorf("replay %s: %w", r.cfg.Topic, err)
	}
	return sum, nil
}

func (r *Replay) summary(resumed bool, started time.Time) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{Stats: r.state.Stats.clone(), Resumed: resumed, Complete: r.state.done(), Duration: time.Since(started)}
	s.Ranges = make(map[int32]kafka.OffsetRange, len(r.state.Partitions))
	for p, st := range r.state.Partitions {
		s.Ranges[p] = st.OffsetRange
	}
	return s
}

// plan loads the checkpoint or computes and saves the ranges.
func (r *Replay) plan(ctx context.Context) (resumed bool, err error) {
	spec := r.cfg.spec()
	if !r.cfg.DryRun {
		cp, err := loadCheckpoint(r.cfg.Checkpoint)
		if err != nil {
			return false, err
		}
		if cp != nil {
			if cp.Topic != r.cfg.Topic || cp.Spec != spec {
				return false, fmt.Errorf("checkpoint %s belongs to another replay (topic %s, %s), not to this one (topic %s, %s); use another checkpoint file, or delete it to start over",
					r.cfg.Checkpoint, cp.Topic, cp.Spec, r.cfg.Topic, spec)
			}
			r.setState(cp)
			return true, nil
		}
	}
	ranges, err := r.ranges(ctx)
	if err != nil {
		return false, err
	}
	cp := &checkpoint{Version: checkpointVersion, Topic: r.cfg.Topic, Spec: spec, Partitions: map[int32]*partitionState{}}
	for p, rg := range ranges {
		cp.Partitions[p] = &partitionState{OffsetRange: rg, Next: rg.Start}
	}
	if !r.cfg.DryRun {
		// Saved before anything is written, so that the ends stay fixed
		// across resumes even though the high watermark moves on.
		if err := cp.save(r.cfg.Checkpoint); err != nil {
			return false, err
		}
	}
	r.setState(cp)
	return false, nil
}

func (r *Replay) setState(cp *checkpoint) {
	r.state = cp
	var total, done int64
	for _, st := range cp.Partitions {
		total += st.Len()
		done += st.Next - st.Start
	}
	r.totalOffs.Store(total)
	r.doneOffs.Store(done)
	r.readBytes.Store(cp.Stats.ReadBytes)
	r.eventsOut.Store(cp.Stats.Total.EventsOut)
}

// ranges resolves the configured window to offset ranges within what the
// log still holds.
func (r *Replay) ranges(ctx context.Context) (map[int32]kafka.OffsetRange, error) {
	bounds, err := r.deps.Reader.Bounds(ctx, r.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", r.cfg.Topic, err)
	}
	out := map[int32]kafka.OffsetRange{}
	if len(r.cfg.Offsets) > 0 {
		for p, rg := range r.cfg.Offsets {
			b, ok := bounds[p]
			switch {
			case !ok:
				return nil, fmt.Errorf("replay %s: partition %d does not exist (partitions %v)", r.cfg.Topic, p, slices.Sorted(maps.Keys(bounds)))
			case rg.Start < b.Start:
				return nil, fmt.Errorf("replay %s: partition %d: start offset %d is no longer in the log (log start %d)", r.cfg.Topic, p, rg.Start, b.Start)
			case rg.End > b.End:
				return nil, fmt.Errorf("replay %s: partition %d: end offset %d is beyond the high watermark %d", r.cfg.Topic, p, rg.End, b.End)
			}
			out[p] = rg
		}
		return out, nil
	}
	for p, b := range bounds {
		out[p] = b
	}
	if !r.cfg.From.IsZero() {
		at, err := r.deps.Reader.OffsetsForTime(ctx, r.cfg.Topic, r.cfg.From)
		if err != nil {
			return nil, fmt.Errorf("replay %s: start of window: %w", r.cfg.Topic, err)
		}
		for p, off := range at {
			if rg, ok := out[p]; ok {
				rg.Start = min(max(off, rg.Start), rg.End)
				out[p] = rg
			}
		}
	}
	if !r.cfg.To.IsZero() {
		at, err := r.deps.Reader.OffsetsForTime(ctx, r.cfg.Topic, r.cfg.To)
		if err != nil {
			return nil, fmt.Errorf("replay %s: end of window: %w", r.cfg.Topic, err)
		}
		for p, off := range at {
			if rg, ok := out[p]; ok {
				rg.End = max(min(off, rg.End), rg.Start)
				out[p] = rg
			}
		}
	}
	return out, nil
}

// runPartition processes one partition's remaining range.
func (r *Replay) runPartition(ctx context.Context, p int32, rg kafka.OffsetRange) error {
	w, err := r.newWorker()
	if err != nil {
		return err
	}
	return r.deps.Reader.ReadRange(ctx, r.cfg.Topic, p, rg, func(ctx context.Context, b kafka.Batch) error {
		return r.handle(ctx, w, b)
	})
}

// handle runs one batch through the pipeline, writes the output and moves
// the checkpoint past the batch.
func (r *Replay) handle(ctx context.Context, w *worker, b kafka.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	var stats Stats
	var events, dlq, alerts []kafka.Record
	for _, rec := range b.Records {
		stats.Read++
		stats.ReadBytes += int64(len(rec.Value))
		cluster := string(rec.HeaderValue(schemas.HeaderCluster))
		if r.clusters != nil && !r.clusters[cluster] {
			stats.SkippedCluster++
			continue
		}
		if (!r.cfg.From.IsZero() && rec.Time.Before(r.cfg.From)) || (!r.cfg.To.IsZero() && !rec.Time.Before(r.cfg.To)) {
			stats.SkippedTime++
			continue
		}
		out, d, err := w.process(ctx, b, rec, cluster)
		if err != nil {
			return err
		}
		c := Counts{EventsIn: 1, BytesIn: int64(len(rec.Value))}
		rule := RuleDLQ
		if d != nil {
			rule = RuleLabel(*d)
		}
		for _, o := range out {
			switch o.Topic {
			case eventsOut:
				c.EventsOut++
				c.BytesOut += int64(len(o.Value))
				events = append(events, o)
			case dlqOut:
				c.DLQ++
				dlq = append(dlq, o)
			case alertsOut:
				var a struct {
					Rule string `json:"rule"`
				}
				if err := json.Unmarshal(o.Value, &a); err != nil || a.Rule == "" {
					return fmt.Errorf("pipeline wrote an alert without a rule at offset %d: %v", rec.Offset, err)
				}
				stats.detected(a.Rule)
				alerts = append(alerts, o)
			default:
				return fmt.Errorf("pipeline wrote to unexpected topic %q", o.Topic)
			}
		}
		stats.record(cluster, rule, c)
	}
	next := b.Records[len(b.Records)-1].Offset + 1

	if !r.cfg.DryRun {
		// The batch in flight is finished even when ctx was canceled:
		// an interrupt then leaves nothing half-written behind.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		defer cancel()
		if len(events) > 0 {
			if err := r.deps.Target.Write(wctx, events); err != nil {
				return fmt.Errorf("write %d events: %w", len(events), err)
			}
		}
		if len(dlq) > 0 && r.deps.DLQ != nil {
			if err := r.deps.DLQ.Write(wctx, dlq); err != nil {
				return fmt.Errorf("write %d dlq records: %w", len(dlq), err)
			}
		}
		if len(alerts) > 0 && r.deps.Alerts != nil {
			if err := r.deps.Alerts.Write(wctx, alerts); err != nil {
				return fmt.Errorf("write %d alerts: %w", len(alerts), err)
			}
		}
	}
	return r.advance(b.Partition, next, stats)
}

// advance records that everything of partition p below next is done and
// saves the checkpoint.
func (r *Replay) advance(p int32, next int64, stats Stats) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state.Partitions[p]
	prev := st.Next
	st.Next = next
	r.state.Stats.add(stats)
	if !r.cfg.DryRun {
		if err := r.state.save(r.cfg.Checkpoint); err != nil {
			// The target has the records; a resume from the previous
			// checkpoint writes them again (duplicates, no loss).
			st.Next = prev
			return err
		}
	}
	r.doneOffs.Add(next - prev)
	r.readBytes.Add(stats.ReadBytes)
	r.eventsOut.Add(stats.Total.EventsOut)
	return nil
}

// worker runs records through a pipeline of its own: the pipeline's
// clock and the recording policy hold the current record, so a worker
// serves one partition at a time.
type worker struct {
	pipe *pipeline.Pipeline
	out  *capture
	pol  *recordingPolicy
	now  time.Time
}

func (r *Replay) newWorker() (*worker, error) {
	w := &worker{out: &capture{}, pol: &recordingPolicy{def: r.deps.Policy, clusters: r.deps.ClusterPolicies}}
	opts := append(slices.Clone(r.deps.PipelineOptions), pipeline.WithClock(func() time.Time { return w.now }))
	topics := schemas.Topics{Raw: r.cfg.Topic, Events: eventsOut, DLQ: dlqOut, Alerts: alertsOut}
	pipe, err := pipeline.New(pipeline.Config{Topics: topics, MaxEventBytes: r.cfg.MaxEventBytes}, w.pol, w.out, nil, r.log, opts...)
	if err != nil {
		return nil, fmt.Errorf("replay pipeline: %w", err)
	}
	if r.deps.Detections != nil {
		// The recording policy stays the fleet default: it picks the
		// cluster's own policy itself.
		if err := pipe.SetFleet(pipeline.Fleet{Default: w.pol, Detections: r.deps.Detections}); err != nil {
			return nil, fmt.Errorf("replay pipeline: %w", err)
		}
	}
	w.pipe = pipe
	return w, nil
}

// process runs one record through the pipeline and returns its output and
// the policy's decision (nil when the record never reached the policy).
// One record per Handle call so that the clock can be the record's own
// timestamp: ProcessedAt is then the same in every replay of the record.
func (w *worker) process(ctx context.Context, b kafka.Batch, rec kafka.Record, cluster string) ([]kafka.Record, *policy.Decision, error) {
	w.now = rec.Time
	w.out.records = w.out.records[:0]
	w.pol.cluster, w.pol.decided = cluster, false
	if err := w.pipe.Handle(ctx, kafka.Batch{Topic: b.Topic, Partition: b.Partition, Records: []kafka.Record{rec}}); err != nil {
		return nil, nil, fmt.Errorf("process offset %d: %w", rec.Offset, err)
	}
	var d *policy.Decision
	if w.pol.decided {
		dd := w.pol.last
		d = &dd
	}
	return slices.Clone(w.out.records), d, nil
}

// capture is the pipeline's producer: it keeps the output of one Handle
// call for the replay to route.
type capture struct{ records []kafka.Record }

func (c *capture) Produce(_ context.Context, records ...kafka.Record) error {
	c.records = append(c.records, records...)
	return nil
}

func (c *capture) Close() error { return nil }

// recordingPolicy applies the policy of the current record's cluster and
// remembers its decision, which the per-rule counts need and the pipeline
// does not return.
type recordingPolicy struct {
	def      pipeline.Policy
	clusters map[string]pipeline.Policy
	cluster  string
	decided  bool
	last     policy.Decision
}

func (p *recordingPolicy) Apply(ev *schemas.Event) (policy.Decision, error) {
	pol := p.def
	if c, ok := p.clusters[p.cluster]; ok && c != nil {
		pol = c
	}
	d, err := pol.Apply(ev)
	if err == nil {
		p.decided, p.last = true, d
	}
	return d, err
}

// Progress is a snapshot of a running replay.
type Progress struct {
	// Offsets done and in total (records, where partitions have no gaps).
	Done, Total int64
	// DoneThisRun excludes what earlier runs of a resumed replay did.
	DoneThisRun int64
	Bytes       int64
	EventsOut   int64
	Elapsed     time.Duration
}

// Rate is the offsets per second of this run.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.DoneThisRun) / p.Elapsed.Seconds()
}

// ETA is the remaining time at the current rate; 0 when unknown.
func (p Progress) ETA() time.Duration {
	rate := p.Rate()
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second))
}

// Progress returns a snapshot; safe to call while Run runs.
func (r *Replay) Progress() Progress {
	done := r.doneOffs.Load()
	var elapsed time.Duration
	if ns := r.startedNs.Load(); ns != 0 {
		elapsed = time.Since(time.Unix(0, ns))
	}
	return Progress{
		Done:        done,
		Total:       r.totalOffs.Load(),
		DoneThisRun: done - r.resumeOffs.Load(),
		Bytes:       r.readBytes.Load(),
		EventsOut:   r.eventsOut.Load(),
		Elapsed:     elapsed,
	}
}

// String formats a progress line.
func (p Progress) String() string {
	pct := 100.0
	if p.Total > 0 {
		pct = 100 * float64(p.Done) / float64(p.Total)
	}
	eta := "-"
	if d := p.ETA(); d > 0 {
		eta = d.Round(time.Second).String()
	}
	return fmt.Sprintf("%s/%s events (%.1f%%), %s read, %s kept, %s events/s, ETA %s",
		strconv.FormatInt(p.Done, 10), strconv.FormatInt(p.Total, 10), pct, HumanBytes(p.Bytes),
		strconv.FormatInt(p.EventsOut, 10), strconv.FormatFloat(p.Rate(), 'f', 0, 64), eta)
}
