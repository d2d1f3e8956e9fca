package kafkago

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

const (
	// fetchWait is the long-poll time of a partition reader's fetches.
	// kafka-go cannot interrupt a fetch in flight, so closing a reader (on
	// revoke or shutdown) waits for it: keep it short. Records still arrive
	// as soon as they are written (MinBytes is 1).
	fetchWait = 250 * time.Millisecond
	// joinBackoff is the pause before the next attempt to join after a
	// failed one (kafka-go's default is 5s).
	joinBackoff = 500 * time.Millisecond
	// readerRetryBackoff is the pause before a generation is ended because
	// a partition reader or a commit failed, so a persistent failure does
	// not turn into a tight rejoin loop.
	readerRetryBackoff = time.Second
	// rebalanceTimeout is how long the coordinator waits for every member
	// to rejoin. A member rejoins only once its handlers returned, and
	// handlers see their ctx canceled on revoke, so this only matters for
	// handlers that ignore ctx.
	rebalanceTimeout = 30 * time.Second
)

var (
	errRevoked = errors.New("kafka-go group: partition revoked")
	errClosed  = errors.New("kafka-go group: closed")
)

// Group is a kafka.GroupConsumer on kafka-go's ConsumerGroup.
//
// kafka-go's Reader with a GroupID can neither seek nor report a revoke,
// so Group drives the lower-level API instead: for each generation it
// starts one goroutine per assigned partition, which reads with its own
// partition Reader from the committed offset, hands batches to the
// handler and commits after each handled batch with the generation's
// CommitOffsets (unless the handler is a kafka.OffsetOwner that commits
// them itself). A generation ends (and with it the handlers' ctx) when a
// heartbeat reports a rebalance. kafka-go's rebalances are eager: every
// partition is revoked at every rebalance.
//
// A member sees partitions added to a topic, or a topic created after the
// group formed, only at the next rebalance: kafka-go's partition watcher
// is left off because it ends the generation in a loop while a topic is
// missing.
//
// Limitation: kafka-go's readers do not filter aborted transactions, even
// with IsolationLevel ReadCommitted (which only stops the fetch at the last
// stable offset), and they deliver transaction control records as
// ordinary records. Read topics written by transactional producers with
// the sarama adapter.
type Group struct {
	cfg  kafka.GroupConfig
	opts options
	log  *slog.Logger
	sec  security

	mu      sync.Mutex
	closed  bool
	stop    context.CancelFunc // stops the running Run; nil when none runs
	stopped chan struct{}      // closed when the running Run returned
}

var _ kafka.GroupConsumer = (*Group)(nil)

// NewGroup returns a group member for cfg; it joins the group in Run.
func NewGroup(cfg kafka.GroupConfig, opts ...Option) (*Group, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sec, err := newSecurity(cfg.Brokers, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka-go group: %w", err)
	}
	o := buildOptions(opts)
	return &Group{cfg: cfg, opts: o, sec: sec, log: o.log().With("group", cfg.Group)}, nil
}

func (g *Group) groupConfig() kgo.ConsumerGroupConfig {
	start := kgo.FirstOffset
	if g.cfg.StartAtLatest {
		start = kgo.LastOffset
	}
	// A rebalance is noticed at the next heartbeat, so a short interval
	// means a quick revoke; a tenth of the session timeout is still far
	// from losing the session.
	heartbeat := max(g.cfg.SessionTimeout/10, 50*time.Millisecond)
	return kgo.ConsumerGroupConfig{
		ID:                g.cfg.Group,
		Brokers:           g.cfg.Brokers,
		Dialer:            newDialer(g.cfg.ClientID, g.sec),
		Topics:            g.cfg.Topics,
		HeartbeatInterval: heartbeat,
		SessionTimeout:    g.cfg.SessionTimeout,
		RebalanceTimeout:  rebalanceTimeout,
		JoinGroupBackoff:  joinBackoff,
		StartOffset:       start,
		ErrorLogger:       g.opts.kafkaGoLogger("group", g.cfg.Group),
	}
}

// Run joins the group and consumes until ctx is canceled, Close is called
// or h fails. See kafka.GroupConsumer.
func (g *Group) Run(ctx context.Context, h kafka.Handler) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	stopped := make(chan struct{})
	defer close(stopped)

	g.mu.Lock()
	switch {
	case g.closed:
		g.mu.Unlock()
		return errClosed
	case g.stop != nil:
		g.mu.Unlock()
		return errors.New("kafka-go group: Run is already running")
	}
	g.stop, g.stopped = stop, stopped
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.stop, g.stopped = nil, nil
		g.mu.Unlock()
	}()

	cg, err := kgo.NewConsumerGroup(g.groupConfig())
	if err != nil {
		return fmt.Errorf("kafka-go group %s: %w", g.cfg.Group, err)
	}

	r := &run{group: g, h: h, runCtx: runCtx, valueCtx: ctx, stop: stop, handlerCommits: kafka.HandlerCommitsOffsets(h), syncer: kafka.HandlerSyncer(h)}
	for {
		gen, err := cg.Next(runCtx)
		if runCtx.Err() != nil {
			break
		}
		if err != nil && permanent(err) {
			// An untrusted certificate or a refused password does not
			// go away by itself: Run fails, and the caller's
			// supervisor reports it and backs off, instead of kafka-go
			// rejoining every joinBackoff for ever.
			r.fail(fmt.Errorf("kafka-go group %s: join: %w", g.cfg.Group, g.sec.describe(err)))
			break
		}
		if err != nil {
			// kafka-go retries the join by itself (after joinBackoff);
			// Next only reports the failure.
			g.log.Warn("join consumer group", "err", err)
			continue
		}
		r.startGeneration(gen)
	}

	if err := r.failure(); err != nil {
		// Closing the group first ends the generation, so the other
		// partitions' handlers see their ctx canceled and commit nothing
		// more; the member then leaves and the partitions move on.
		_ = cg.Close()
		r.work.Wait()
		return err
	}
	// Shutdown: let the in-flight batches finish and commit while the
	// generation is still alive, then leave the group.
	r.work.Wait()
	_ = cg.Close()
	return nil
}

// Close stops a running Run (as if its ctx was canceled), waits for it to
// return, which includes leaving the group, and makes later Runs fail.
// Safe to call twice and without Run. Do not call it from a handler: Run
// waits for the handlers.
func (g *Group) Close() error {
	g.mu.Lock()
	g.closed = true
	stop, stopped := g.stop, g.stopped
	g.mu.Unlock()
	if stop != nil {
		stop()
		<-stopped
	}
	return nil
}

// run is the state of one call to Run.
type run struct {
	group *Group
	h     kafka.Handler
	// handlerCommits: h is a kafka.OffsetOwner that commits its offsets
	// itself; the member commits none.
	handlerCommits bool
	// syncer is h's kafka.Syncer Sync, or nil.
	syncer func(context.Context) error
	// runCtx ends when Run must stop: its ctx was canceled, Close was
	// called or a handler failed.
	runCtx context.Context
	// valueCtx is Run's ctx; handlers get its values but not its
	// cancellation, so that a shutdown lets in-flight batches finish.
	valueCtx context.Context
	stop     context.CancelFunc
	// work counts partitions whose consumption has not finished yet.
	work sync.WaitGroup

	mu  sync.Mutex
	err error
}

func (r *run) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.stop()
}

func (r *run) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// startGeneration starts one goroutine per assigned partition.
func (r *run) startGeneration(gen *kgo.Generation) {
	// kafka-go's connection to the coordinator is shared by the heartbeat
	// and every partition; commits are serialized so that they do not
	// interleave deadlines on it.
	commitMu := &sync.Mutex{}
	for topic, assigned := range gen.Assignments {
		for _, pa := range assigned {
			p := &partition{
				run:      r,
				gen:      gen,
				commitMu: commitMu,
				topic:    topic,
				id:       int32(pa.ID),
				offset:   pa.Offset,
			}
			r.work.Add(1)
			gen.Start(p.main)
		}
	}
}

// partition consumes one partition for one generation.
type partition struct {
	*run
	gen      *kgo.Generation
	commitMu *sync.Mutex
	topic    string
	id       int32
	offset   int64 // committed offset, or kgo.FirstOffset/LastOffset
}

// main is started with gen.Start; kafka-go ends the generation as soon as
// one such function returns. When consumption stops because Run is
// stopping, the function therefore keeps the generation alive until Run
// closes the group: returning early would revoke the handlers of the
// other partitions, which are finishing their last batches.
func (p *partition) main(genCtx context.Context) {
	endGeneration := p.consume(genCtx)
	p.work.Done()
	if !endGeneration {
		<-genCtx.Done()
	}
}

// consume reads, handles and commits batches until the generation ends or
// Run stops. It reports whether the generation must end because of a
// failure that a rejoin can repair (a reader or commit error).
func (p *partition) consume(genCtx context.Context) (endGeneration bool) {
	log := p.group.log.With("topic", p.topic, "partition", p.id)

	// The handler's ctx ends on revoke, not on shutdown.
	hctx, hcancel := context.WithCancelCause(context.WithoutCancel(p.valueCtx))
	defer hcancel(nil)
	defer context.AfterFunc(genCtx, func() { hcancel(errRevoked) })()
	// Fetching stops on revoke and on shutdown.
	fctx, fcancel := context.WithCancel(p.runCtx)
	defer fcancel()
	defer context.AfterFunc(genCtx, fcancel)()

	cfg := p.group.cfg
	reader := kgo.NewReader(kgo.ReaderConfig{
		Brokers:   cfg.Brokers,
		Dialer:    newDialer(cfg.ClientID, p.group.sec),
		Topic:     p.topic,
		Partition: int(p.id),
		MaxWait:   fetchWait,
		// Only stops fetches at the last stable offset; see the
		// limitation in Group's doc.
		IsolationLevel: kgo.ReadCommitted,
		ErrorLogger:    p.group.opts.kafkaGoLogger("group", cfg.Group, "topic", p.topic, "partition", p.id),
	})
	defer func() { _ = reader.Close() }()
	if err := reader.SetOffset(p.offset); err != nil {
		log.Warn("set reader offset", "offset", p.offset, "err", err)
		return p.backoff(fctx)
	}

	for {
		b, err := p.fetch(fctx, reader)
		if err != nil {
			if fctx.Err() != nil {
				return false
			}
			log.Warn("read partition; rejoining the group", "err", err)
			return p.backoff(fctx)
		}
		err = p.h.Handle(hctx, b)
		if hctx.Err() != nil {
			// Revoked while handling: whatever the outcome, the batch is
			// not committed and comes again to the partition's next owner.
			return false
		}
		first, last := b.Records[0].Offset, b.Records[len(b.Records)-1].Offset
		if err != nil {
			p.fail(fmt.Errorf("kafka-go group %s: handle %s/%d offsets %d-%d: %w",
				cfg.Group, p.topic, p.id, first, last, err))
			return false
		}
		if p.handlerCommits {
			continue
		}
		if err := p.sync(hctx); err != nil {
			p.fail(fmt.Errorf("kafka-go group %s: sync handler before committing %s/%d offset %d: %w",
				cfg.Group, p.topic, p.id, last+1, err))
			return false
		}
		if err := p.commit(last + 1); err != nil {
			if genCtx.Err() != nil {
				return false
			}
			// The records stay uncommitted and come again after the
			// rejoin, which also resynchronizes the generation.
			log.Warn("commit offset; rejoining the group", "offset", last+1, "err", err)
			return p.backoff(fctx)
		}
	}
}

// backoff waits before a failing partition ends the generation. It
// reports whether the generation must still be ended, which is not the
// case when it ended or Run stopped meanwhile.
func (p *partition) backoff(fctx context.Context) bool {
	t := time.NewTimer(readerRetryBackoff)
	defer t.Stop()
	select {
	case <-fctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (p *partition) commit(next int64) error {
	p.commitMu.Lock()
	defer p.commitMu.Unlock()
	return p.gen.CommitOffsets(map[string]map[int]int64{p.topic: {int(p.id): next}})
}

// sync makes the handled batches durable before their offsets are
// committed, when the handler is a kafka.Syncer. This adapter commits
// after every batch, so it syncs after every batch too.
func (p *partition) sync(ctx context.Context) error {
	if p.syncer == nil {
		return nil
	}
	return p.syncer(ctx)
}

// fetch returns the next batch: it waits for a first record, then for at
// most MaxWait for more, up to MaxBatch. A batch cut short because ctx
// ended is dropped (nothing of it was handled, so nothing is lost).
func (p *partition) fetch(ctx context.Context, reader *kgo.Reader) (kafka.Batch, error) {
	cfg := p.group.cfg
	m, err := reader.FetchMessage(ctx)
	if err != nil {
		return kafka.Batch{}, err
	}
	b := kafka.Batch{Topic: p.topic, Partition: p.id, Records: make([]kafka.Record, 0, min(cfg.MaxBatch, 64))}
	b.Records = append(b.Records, toRecord(p.topic, p.id, m))
	b.HighWatermark = m.HighWaterMark
	if len(b.Records) >= cfg.MaxBatch {
		return b, nil
	}
	wctx, cancel := context.WithTimeout(ctx, cfg.MaxWait)
	defer cancel()
	for len(b.Records) < cfg.MaxBatch {
		m, err := reader.FetchMessage(wctx)
		if err != nil {
			if ctx.Err() != nil {
				return kafka.Batch{}, ctx.Err()
			}
			if wctx.Err() != nil {
				break
			}
			return kafka.Batch{}, err
		}
		b.Records = append(b.Records, toRecord(p.topic, p.id, m))
		b.HighWatermark = m.HighWaterMark
	}
	return b, nil
}
