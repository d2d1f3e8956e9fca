package saramakafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// GroupConsumer is a kafka.GroupConsumer on a sarama ConsumerGroup.
type GroupConsumer struct {
	cfg kafka.GroupConfig

	// runMu serializes Run calls: one member runs one session at a time.
	runMu sync.Mutex

	// mu guards group and closed. group is nil after a handler error made
	// the member leave; the next Run joins with a new one.
	mu     sync.Mutex
	group  sarama.ConsumerGroup
	closed bool

	// running is the handler of the current Run, for the assignment hook;
	// nil between runs.
	runningMu sync.Mutex
	running   *groupHandler

	// beforeCommit, when set (tests only), runs before each offset commit
	// the member sends, on the committing goroutine: a test holds it to
	// keep a commit in flight while a claim is revoked.
	beforeCommit func()
}

var _ kafka.GroupConsumer = (*GroupConsumer)(nil)

// NewGroup creates a group member. It joins the group when Run is called.
func NewGroup(cfg kafka.GroupConfig) (*GroupConsumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &GroupConsumer{cfg: cfg}
	// Connect now, so that a wrong address fails here and not in Run.
	g, err := c.newSaramaGroup()
	if err != nil {
		return nil, err
	}
	c.group = g
	return c, nil
}

func (c *GroupConsumer) newSaramaGroup() (sarama.ConsumerGroup, error) {
	cfg := c.cfg
	sc, err := newConfig(cfg.ClientID, cfg.TLS, cfg.SASL)
	if err != nil {
		return nil, fmt.Errorf("kafka group %s: %w", cfg.Group, err)
	}
	// Cooperative-sticky moves only the partitions that change owner on a
	// rebalance; the others keep consuming.
	strategy, err := newAssignStrategy(c.assigned)
	if err != nil {
		return nil, fmt.Errorf("kafka group %s: %w", cfg.Group, err)
	}
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	sc.Consumer.Group.Session.Timeout = cfg.SessionTimeout
	// Frequent heartbeats make a member notice a rebalance quickly, which
	// is what bounds how long the other members wait for it.
	sc.Consumer.Group.Heartbeat.Interval = max(cfg.SessionTimeout/10, 10*time.Millisecond)
	// Offsets are committed by hand, after the handler succeeded, never on
	// a timer: auto-commit would commit records still being handled.
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	if cfg.StartAtLatest {
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	// Records of aborted transactions are never handed to the handler.
	sc.Consumer.IsolationLevel = sarama.ReadCommitted
	// sarama sends fetches, offset commits and heartbeats over one
	// connection per broker, and a broker answers a connection's requests
	// in order: a commit waits behind a long-polling fetch. A caught-up
	// member would then wait up to the fetch wait (500ms by default) after
	// every batch. Tie the long poll to MaxWait instead, within bounds.
	sc.Consumer.MaxWaitTime = min(max(cfg.MaxWait, 50*time.Millisecond), 500*time.Millisecond)
	g, err := sarama.NewConsumerGroup(cfg.Brokers, cfg.Group, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka group %s: connect to %v: %w", cfg.Group, cfg.Brokers, describe(err, cfg.Brokers, cfg.SASL))
	}
	return g, nil
}

// current returns the sarama group, joining anew after a failure.
func (c *GroupConsumer) current() (sarama.ConsumerGroup, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("kafka group %s: %w", c.cfg.Group, sarama.ErrClosedConsumerGroup)
	}
	if c.group == nil {
		g, err := c.newSaramaGroup()
		if err != nil {
			return nil, err
		}
		c.group = g
	}
	return c.group, nil
}

// leave closes g after a handler error, so that the group rebalances now
// instead of waiting a session timeout for the silent member.
func (c *GroupConsumer) leave(g sarama.ConsumerGroup) {
	c.mu.Lock()
	if c.group == g {
		c.group = nil
	}
	c.mu.Unlock()
	// The handler's error is what Run reports; failing to leave only
	// delays the rebalance until the session times out.
	_ = g.Close()
}

// Run joins the group and hands batches to h until ctx is canceled (it
// returns nil) or h fails (it returns h's error, wrapped, after leaving
// the group). Run can be called again afterwards; the member then rejoins.
func (c *GroupConsumer) Run(ctx context.Context, h kafka.Handler) error {
	c.runMu.Lock()
	defer c.runMu.Unlock()

	g, err := c.current()
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	gh := &groupHandler{cfg: c.cfg, group: g, h: h, ctx: runCtx, stop: stop, beforeCommit: c.beforeCommit,
		handlerCommits: kafka.HandlerCommitsOffsets(h), syncer: kafka.HandlerSyncer(h)}
	c.runningMu.Lock()
	c.running = gh
	c.runningMu.Unlock()
	defer func() {
		c.runningMu.Lock()
		c.running = nil
		c.runningMu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	for {
		// Each Consume joins with a new session that owns nothing yet.
		gh.resetOwned()
		// With the cooperative protocol Consume survives rebalances and
		// returns only when the session ends: ctx done, a claim that ended
		// on its own (handler error), or a lost session. A new session then
		// rejoins with the same member id.
		err := g.Consume(runCtx, c.cfg.Topics, gh)
		if herr := gh.failure(); herr != nil {
			c.leave(g)
			return fmt.Errorf("kafka group %s: %w", c.cfg.Group, herr)
		}
		if ctx.Err() != nil {
			return nil
		}
		var cfgErr sarama.ConfigurationError
		switch {
		case err == nil:
			backoff = 100 * time.Millisecond
			continue
		case errors.Is(err, sarama.ErrClosedConsumerGroup):
			return fmt.Errorf("kafka group %s: %w", c.cfg.Group, err)
		case errors.As(err, &cfgErr):
			return fmt.Errorf("kafka group %s: %w", c.cfg.Group, err)
		case errors.Is(err, sarama.ErrSASLAuthenticationFailed):
			// Retrying here would hide a wrong or rotated password
			// inside Run; the caller's supervisor logs it and backs off.
			c.leave(g)
			return fmt.Errorf("kafka group %s: %w", c.cfg.Group, describe(err, c.cfg.Brokers, c.cfg.SASL))
		case errors.Is(err, sarama.ErrInvalidSessionTimeout):
			// The broker refuses the session timeout
			// (group.min/max.session.timeout.ms, 6 s to 30 min by
			// default): joining again cannot succeed, and retrying
			// would leave the member idle without a word.
			return fmt.Errorf("kafka group %s: session timeout %s: %w", c.cfg.Group, c.cfg.SessionTimeout, err)
		}
		// Anything else (coordinator moving, broker restarting, a failed
		// join) is worth retrying: the group must outlive broker hiccups.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Close leaves the group. Safe to call twice, and without Run.
func (c *GroupConsumer) Close() error {
	c.mu.Lock()
	g := c.group
	c.group, c.closed = nil, true
	c.mu.Unlock()
	if g == nil {
		return nil
	}
	if err := g.Close(); err != nil {
		return fmt.Errorf("kafka group %s: close: %w", c.cfg.Group, err)
	}
	return nil
}

// assigned is the assignment hook: it tells the running handler, when it
// is a kafka.AssignmentPreparer, about partitions the member did not own.
// sarama calls it after SyncGroup and before it reads the offsets of the
// new partitions, on its rebalance path: the member waits for it.
func (c *GroupConsumer) assigned(claims map[string][]int32) {
	c.runningMu.Lock()
	gh := c.running
	c.runningMu.Unlock()
	if gh == nil {
		return
	}
	added := gh.updateOwned(claims)
	p, ok := gh.h.(kafka.AssignmentPreparer)
	if !ok {
		return
	}
	for topic, partitions := range added {
		if err := p.PrepareAssigned(gh.ctx, topic, partitions); err != nil {
			if gh.ctx.Err() != nil {
				return // stopping anyway; not a failure
			}
			// Stops the member: the session ends before a batch of
			// the partitions is handled.
			gh.fail(fmt.Errorf("prepare assigned partitions %s %v: %w", topic, partitions, err))
			return
		}
	}
}

// assignStrategy is sarama's cooperative-sticky strategy with a hook on
// the member's own assignment. It keeps every optional interface of the
// strategy (the cooperative protocol, the generation in the
// subscription), which sarama finds by type assertion.
type assignStrategy struct {
	cooperativeStrategy
	hook func(claims map[string][]int32)
}

type cooperativeStrategy interface {
	sarama.RebalanceProtocolBalanceStrategy
	sarama.SubscriptionUserDataBalanceStrategy
	sarama.OnAssignmentBalanceStrategy
}

func newAssignStrategy(hook func(map[string][]int32)) (sarama.BalanceStrategy, error) {
	s, ok := sarama.NewBalanceStrategyCooperativeSticky().(cooperativeStrategy)
	if !ok {
		return nil, errors.New("sarama's cooperative-sticky strategy lacks an optional interface the assignment hook needs")
	}
	return &assignStrategy{cooperativeStrategy: s, hook: hook}, nil
}

// OnAssignment implements sarama.OnAssignmentBalanceStrategy.
func (s *assignStrategy) OnAssignment(a *sarama.ConsumerGroupMemberAssignment, generationID int32) {
	s.cooperativeStrategy.OnAssignment(a, generationID)
	s.hook(a.Topics)
}

// groupHandler adapts a kafka.Handler to sarama's ConsumerGroupHandler.
type groupHandler struct {
	cfg   kafka.GroupConfig
	group sarama.ConsumerGroup
	h     kafka.Handler
	ctx   context.Context // the Run's, for PrepareAssigned
	stop  context.CancelFunc
	// beforeCommit is GroupConsumer.beforeCommit (tests only).
	beforeCommit func()
	// handlerCommits: h is a kafka.OffsetOwner that commits its offsets
	// in its transactions; the member marks and commits nothing.
	handlerCommits bool
	// syncer is h's kafka.Syncer Sync, or nil: the committer calls it
	// before each commit.
	syncer func(context.Context) error

	mu      sync.Mutex
	err     error
	owned   map[string][]int32 // the session's last assignment
	commits *committer         // the current session's
}

func (g *groupHandler) resetOwned() {
	g.mu.Lock()
	g.owned = nil
	g.mu.Unlock()
}

// updateOwned records the session's new assignment and returns the
// partitions that are new in it.
func (g *groupHandler) updateOwned(claims map[string][]int32) map[string][]int32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	added := map[string][]int32{}
	for topic, partitions := range claims {
		for _, p := range partitions {
			if !slices.Contains(g.owned[topic], p) {
				added[topic] = append(added[topic], p)
			}
		}
	}
	g.owned = make(map[string][]int32, len(claims))
	for topic, partitions := range claims {
		g.owned[topic] = slices.Clone(partitions)
	}
	return added
}

// Setup starts the session's committer. sarama calls it once per session,
// before the first claim; with the cooperative protocol a session outlives
// rebalances, and so does its committer.
func (g *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	c := newCommitter(sess, g.beforeCommit)
	if g.syncer != nil {
		c.sync, c.fail, c.pending = g.syncer, g.fail, map[topicPartition]int64{}
	}
	g.mu.Lock()
	g.commits = c
	g.mu.Unlock()
	go c.run()
	return nil
}

// Cleanup stops the session's committer. sarama calls it after every
// ConsumeClaim of the session returned, and each of them waited for its
// marks to be committed, so nothing is left to commit.
func (g *groupHandler) Cleanup(sarama.ConsumerGroupSession) error {
	g.mu.Lock()
	c := g.commits
	g.commits = nil
	g.mu.Unlock()
	if c != nil {
		c.close()
	}
	return nil
}

func (g *groupHandler) committer() *committer {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.commits
}

func (g *groupHandler) fail(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
	g.stop()
}

func (g *groupHandler) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// ConsumeClaim hands the claim's records to the handler in batches. After
// each batch the handler finished while the partition was still this
// member's, it marks the batch's end for the session's committer and goes
// on with the next batch at once; it returns only once a commit covering
// its last mark has completed.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	topic, partition := claim.Topic(), claim.Partition()
	commits := g.committer()
	// sarama drops a revoked partition's marked offsets as soon as
	// ConsumeClaim returns (auto-commit is off), and the partition's next
	// owner starts at the last committed offset. Waiting here, whatever
	// ends the claim, keeps the next owner after the last handled batch.
	// Runs last: after the handler's last batch returned.
	var lastMark uint64
	defer func() { commits.wait(lastMark) }()
	// sarama tells a claim about its revocation only by closing Messages()
	// and does not hand out the claim's context, so the claim gets its own:
	// canceled when Messages() closes (revoked, or the session ended) or
	// the session context ends.
	ctx, cancel := context.WithCancel(sess.Context())
	defer cancel()
	// The limit is at least sarama's own per-partition channel buffer:
	// pausing is a memory guard, not flow control for every batch, because
	// a resumed partition waits for the broker consumer's next fetch (up to
	// Consumer.MaxWaitTime).
	q := newClaimQueue(g.group, topic, partition, max(2*g.cfg.MaxBatch, 256))
	defer q.finish()
	go func() {
		for m := range claim.Messages() {
			q.push(m)
		}
		q.close()
		cancel()
	}()

	for {
		msgs := q.next(ctx, g.cfg.MaxBatch, g.cfg.MaxWait)
		if msgs == nil {
			return nil
		}
		batch := toBatch(topic, partition, msgs)
		batch.HighWatermark = claim.HighWaterMarkOffset()
		if err := g.h.Handle(ctx, batch); err != nil {
			err = fmt.Errorf("handle batch %s/%d@%d-%d: %w", topic, partition,
				msgs[0].Offset, msgs[len(msgs)-1].Offset, err)
			g.fail(err)
			// Returning ends the session: the other claims' contexts are
			// canceled, so they mark nothing after their current batch,
			// and this batch comes again to the partition's next owner.
			return err
		}
		// A batch that finished after its partition was revoked, or after
		// the member began to stop, is not marked: the partition may
		// already be read by another member, and the handler may have cut
		// its work short on the canceled context.
		if ctx.Err() != nil {
			return nil
		}
		if g.handlerCommits {
			continue
		}
		lastMark = commits.mark(topic, partition, msgs[len(msgs)-1].Offset+1)
	}
}

// committer commits the offsets a session's claims mark. sarama's
// session.Commit sends one OffsetCommit carrying every marked offset of
// the session and waits for the answer (the broker writes it to its log
// first: tens of milliseconds). Claims used to commit after each of their
// batches and wait for it: each claim's next batch waited a round trip,
// and four claims meant four round trips carrying the same offsets, one
// after the other. The committer instead runs one commit at a time for
// all partitions, back to back while claims marked something new, and a
// claim waits only when it ends.
//
// A failed commit is not reported by sarama (Return.Errors is off, as
// before this type existed): its offsets stay marked and the next commit
// carries them again. A claim that ends after a failed last commit leaves
// its partition's next owner to handle again what came after the last
// successful commit: at-least-once, as with the commit after every batch.
//
// For a handler that is a kafka.Syncer the committer keeps the marks to
// itself (pending) and hands sarama only those taken before it called
// Sync, after Sync succeeded: session.Commit sends every offset marked in
// the session, and a batch whose Handle returned while Sync ran may not
// be durable yet. A failed Sync stops the member (fail) and ends the
// waits of the claims, which then return without a commit.
type committer struct {
	sess   sarama.ConsumerGroupSession
	before func() // tests only
	sync   func(context.Context) error
	fail   func(error)

	mu sync.Mutex
	// marked counts the marks so far; a mark's count is its sequence
	// number. committed is the highest mark a completed commit covered.
	marked, committed uint64
	// pending are the marks not given to sarama yet (sync only).
	pending map[topicPartition]int64
	// failed: Sync failed, nothing more is committed.
	failed bool
	// advanced is closed (and replaced) when committed grows.
	advanced chan struct{}

	wake   chan struct{} // room for one "something new was marked"
	stop   chan struct{}
	exited chan struct{}
}

func newCommitter(sess sarama.ConsumerGroupSession, before func()) *committer {
	return &committer{
		sess:     sess,
		before:   before,
		advanced: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
}

// mark records next as the partition's offset to commit and returns the
// mark's sequence number, for wait.
func (c *committer) mark(topic string, partition int32, next int64) uint64 {
	// Marking under mu orders the mark before the sequence number a commit
	// reads: a commit that read seq started after the mark, so sarama's
	// request carries it.
	c.mu.Lock()
	if c.pending != nil {
		c.pending[topicPartition{topic, partition}] = next
	} else {
		c.sess.MarkOffset(topic, partition, next, "")
	}
	c.marked++
	seq := c.marked
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return seq
}

// wait returns once a commit that started after mark seq has completed
// (at once for 0: nothing marked).
func (c *committer) wait(seq uint64) {
	for {
		c.mu.Lock()
		done, advanced := c.committed >= seq || c.failed, c.advanced
		c.mu.Unlock()
		if done {
			return
		}
		<-advanced
	}
}

// run commits until close. It never stops on the session's context: claims
// that end because the session ended still wait for their last commit.
func (c *committer) run() {
	defer close(c.exited)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		c.mu.Lock()
		target, committed, pending := c.marked, c.committed, c.pending
		if pending != nil {
			c.pending = make(map[topicPartition]int64, len(pending))
		}
		c.mu.Unlock()
		if target == committed {
			continue
		}
		if c.sync != nil {
			if err := c.sync(context.Background()); err != nil {
				c.mu.Lock()
				c.failed = true
				close(c.advanced)
				c.advanced = make(chan struct{})
				c.mu.Unlock()
				c.fail(fmt.Errorf("sync the handler before committing offsets: %w", err))
				return
			}
			for tp, next := range pending {
				c.sess.MarkOffset(tp.topic, tp.partition, next, "")
			}
		}
		if c.before != nil {
			c.before()
		}
		c.sess.Commit()
		c.mu.Lock()
		c.committed = target
		close(c.advanced)
		c.advanced = make(chan struct{})
		c.mu.Unlock()
	}
}

// topicPartition keys the committer's pending marks.
type topicPartition struct {
	topic     string
	partition int32
}

// close stops run and waits for it to return.
func (c *committer) close() {
	close(c.stop)
	<-c.exited
}

func toBatch(topic string, partition int32, msgs []*sarama.ConsumerMessage) kafka.Batch {
	b := kafka.Batch{Topic: topic, Partition: partition, Records: make([]kafka.Record, len(msgs))}
	for i, m := range msgs {
		r := kafka.Record{
			Topic:     m.Topic,
			Partition: m.Partition,
			Offset:    m.Offset,
			Key:       m.Key,
			Value:     m.Value,
			Time:      m.Timestamp,
		}
		if len(m.Headers) > 0 {
			r.Headers = make([]kafka.Header, 0, len(m.Headers))
			for _, h := range m.Headers {
				if h == nil {
					continue
				}
				r.Headers = append(r.Headers, kafka.Header{Key: string(h.Key), Value: h.Value})
			}
		}
		b.Records[i] = r
	}
	return b
}

// claimQueue sits between sarama's Messages() channel and the batch loop.
// A goroutine drains Messages() into it all the time, so that the channel
// closing (the only sign of a revoked claim) is seen even while the
// handler is busy. To keep memory bounded, the partition is paused while
// the queue holds more than limit records; sarama then stops fetching it.
type claimQueue struct {
	group     sarama.ConsumerGroup
	topic     string
	partition int32
	limit     int

	mu     sync.Mutex
	msgs   []*sarama.ConsumerMessage
	closed bool // Messages() closed
	done   bool // the claim ended; never pause again
	paused bool
	// ready has room for one signal: "something changed, look again".
	ready chan struct{}
}

func newClaimQueue(g sarama.ConsumerGroup, topic string, partition int32, limit int) *claimQueue {
	return &claimQueue{group: g, topic: topic, partition: partition, limit: limit, ready: make(chan struct{}, 1)}
}

func (q *claimQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *claimQueue) push(m *sarama.ConsumerMessage) {
	q.mu.Lock()
	if q.done {
		// Nobody reads any more; sarama drains the rest itself.
		q.mu.Unlock()
		return
	}
	q.msgs = append(q.msgs, m)
	if len(q.msgs) >= q.limit && !q.paused {
		q.paused = true
		q.group.Pause(map[string][]int32{q.topic: {q.partition}})
	}
	q.mu.Unlock()
	q.signal()
}

func (q *claimQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// finish lifts a pause when the claim ends: sarama remembers paused
// partitions and would start a later claim of this partition paused. The
// forwarding goroutine may still push after that; done keeps it from
// pausing again.
func (q *claimQueue) finish() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.done = true
	q.msgs = nil
	if q.paused {
		q.paused = false
		q.group.Resume(map[string][]int32{q.topic: {q.partition}})
	}
}

// next waits for the first record, then up to wait for more, and returns
// at most maxBatch records. It returns nil when the claim is over (queue
// closed and empty, or ctx done): records not yet handed out are then
// left uncommitted for the partition's next owner.
func (q *claimQueue) next(ctx context.Context, maxBatch int, wait time.Duration) []*sarama.ConsumerMessage {
	var timer <-chan time.Time
	for {
		q.mu.Lock()
		n, closed := len(q.msgs), q.closed
		q.mu.Unlock()
		if ctx.Err() != nil || (n == 0 && closed) {
			return nil
		}
		if n >= maxBatch || (n > 0 && closed) {
			break
		}
		if n > 0 && timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-q.ready:
			continue
		case <-timer:
		}
		break
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.msgs), maxBatch)
	out := make([]*sarama.ConsumerMessage, n)
	copy(out, q.msgs[:n])
	// Drop the references so handed-out records can be collected.
	clear(q.msgs[:n])
	q.msgs = q.msgs[n:]
	if q.paused && len(q.msgs) < q.limit/2 {
		q.paused = false
		q.group.Resume(map[string][]int32{q.topic: {q.partition}})
	}
	return out
}
