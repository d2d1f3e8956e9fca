package kafkatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// waitTimeout bounds every wait of the suite. It is generous on purpose: the
// suite runs with -race on small shared machines, and a wait only takes this
// long when an adapter is broken.
const waitTimeout = 45 * time.Second

// testSessionTimeout is the group session timeout the suite uses: the
// smallest value Apache Kafka accepts by default
// (group.min.session.timeout.ms), so that rebalances are quick on every
// broker.
const testSessionTimeout = 6 * time.Second

// RunConformance runs the behaviour every adapter of package kafka must
// show, as subtests of t. Each subtest gets its own broker from Brokers (a
// fresh in-process broker, or the external cluster named by BrokersEnv) and
// its own topic and group names.
func RunConformance(t *testing.T, f Factory) {
	t.Helper()
	require.NotNil(t, f.NewProducer, "Factory.NewProducer")
	require.NotNil(t, f.NewGroup, "Factory.NewGroup")
	require.NotNil(t, f.NewAdmin, "Factory.NewAdmin")

	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, f) })
	t.Run("PerKeyOrder", func(t *testing.T) { testPerKeyOrder(t, f) })
	t.Run("RedeliveryAfterHandlerError", func(t *testing.T) { testRedelivery(t, f) })
	t.Run("NoCommitAfterRevoke", func(t *testing.T) { testNoCommitAfterRevoke(t, f) })
	t.Run("CleanShutdown", func(t *testing.T) { testCleanShutdown(t, f) })
	t.Run("HandlerCommitsOffsets", func(t *testing.T) { testHandlerCommitsOffsets(t, f) })
	t.Run("SyncBeforeCommit", func(t *testing.T) { testSyncBeforeCommit(t, f) })
	t.Run("Admin", func(t *testing.T) { testAdmin(t, f) })
	t.Run("ProducerErrors", func(t *testing.T) { testProducerErrors(t, f) })
}

// ReferencePartition is the partition of a keyed record in a topic with n
// partitions: FNV-1a of the key, as sarama's default hash partitioner and
// kafka-go's kafka.Hash balancer compute it. Every adapter places keys this
// way, so that records of one key land in the same partition whichever
// adapter produced them.
func ReferencePartition(key []byte, n int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write(key)
	// The conversion to int32 before the modulo is deliberate: it is what
	// both clients do, and it gives different results than uint32 math.
	p := int32(h.Sum32()) % n
	if p < 0 {
		p = -p
	}
	return p
}

// env is one subtest's broker, admin client and names.
type env struct {
	t       *testing.T
	f       Factory
	brokers []string
	admin   kafka.Admin
	topic   string
	group   string
}

func newEnv(t *testing.T, f Factory, partitions int32) *env {
	t.Helper()
	e := &env{t: t, f: f, brokers: Brokers(t)}
	e.admin = f.NewAdmin(t, e.brokers)
	name := uniqueName(t)
	e.topic = "conf-" + name
	e.group = "conf-group-" + name
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, e.admin.EnsureTopics(ctx, kafka.TopicSpec{
		Name: e.topic, Partitions: partitions, ReplicationFactor: 1,
	}), "create topic %s", e.topic)
	return e
}

// uniqueName derives a topic-safe name from the test name, with a suffix
// that keeps reruns against an external cluster apart.
func uniqueName(t *testing.T) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := b.String()
	if len(name) > 150 {
		name = name[len(name)-150:]
	}
	return name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

func (e *env) producer() kafka.Producer {
	return e.f.NewProducer(e.t, kafka.ProducerConfig{Brokers: e.brokers, ClientID: "conformance-producer"})
}

func (e *env) newGroup(clientID string, maxBatch int) kafka.GroupConsumer {
	return e.f.NewGroup(e.t, kafka.GroupConfig{
		Brokers:        e.brokers,
		Group:          e.group,
		Topics:         []string{e.topic},
		ClientID:       clientID,
		MaxBatch:       maxBatch,
		MaxWait:        20 * time.Millisecond,
		SessionTimeout: testSessionTimeout,
	})
}

func (e *env) produce(p kafka.Producer, records []kafka.Record) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(e.t, p.Produce(ctx, records...), "produce %d records to %s", len(records), e.topic)
}

func (e *env) committed() map[int32]int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	offs, err := e.admin.CommittedOffsets(ctx, e.group, e.topic)
	require.NoError(e.t, err, "committed offsets of group %s", e.group)
	return offs
}

// run is one Run call in the background.
type run struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	waited bool
}

// startRun calls g.Run(ctx, h) in a goroutine. The test's cleanup cancels
// and waits for it, so no handler outlives the test.
func startRun(t *testing.T, g kafka.GroupConsumer, h kafka.Handler) *run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if !r.waited {
			select {
			case <-r.done:
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return within %v after its context was canceled", waitTimeout)
			}
		}
	})
	return r
}

// wait waits for Run to return and returns its error.
func (r *run) wait(what string) error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.waited = true
		return err
	case <-time.After(waitTimeout):
		r.t.Fatalf("%s: Run did not return within %v", what, waitTimeout)
		return nil
	}
}

// stop cancels Run's context and requires it to return nil.
func (r *run) stop(what string) {
	r.t.Helper()
	r.cancel()
	require.NoError(r.t, r.wait(what), "%s: Run after its context was canceled", what)
}

// waitFor polls cond until it is true, failing the test after waitTimeout.
// Polling a condition (not sleeping for a guessed time) keeps the suite
// both fast on an idle machine and stable on a loaded one.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		<-tick.C
	}
}

// recorder keeps every batch a handler saw, checking the invariants every
// batch must hold. It reports violations with t.Errorf, which is safe from
// handler goroutines.
type recorder struct {
	t        *testing.T
	topic    string
	maxBatch int

	mu      sync.Mutex
	batches []kafka.Batch
}

func newRecorder(t *testing.T, topic string, maxBatch int) *recorder {
	return &recorder{t: t, topic: topic, maxBatch: maxBatch}
}

func (r *recorder) add(b kafka.Batch) {
	r.check(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
}

func (r *recorder) check(b kafka.Batch) {
	t := r.t
	if b.Topic != r.topic {
		t.Errorf("batch topic %q, want %q", b.Topic, r.topic)
	}
	if len(b.Records) == 0 {
		t.Errorf("empty batch on %s/%d", b.Topic, b.Partition)
	}
	if r.maxBatch > 0 && len(b.Records) > r.maxBatch {
		t.Errorf("batch of %d records on %s/%d, MaxBatch is %d", len(b.Records), b.Topic, b.Partition, r.maxBatch)
	}
	prev := int64(-1)
	for _, rec := range b.Records {
		if rec.Topic != b.Topic || rec.Partition != b.Partition {
			t.Errorf("record %s/%d@%d in batch of %s/%d", rec.Topic, rec.Partition, rec.Offset, b.Topic, b.Partition)
		}
		if rec.Offset <= prev {
			t.Errorf("offsets not increasing in batch of %s/%d: %d after %d", b.Topic, b.Partition, rec.Offset, prev)
		}
		prev = rec.Offset
		if rec.Time.IsZero() {
			t.Errorf("record %s/%d@%d has no Time", rec.Topic, rec.Partition, rec.Offset)
		}
	}
}

func (r *recorder) handler() kafka.Handler {
	return kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		r.add(b)
		return nil
	})
}

func (r *recorder) snapshot() []kafka.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// partitions returns the partitions the recorder saw batches of.
func (r *recorder) partitions() map[int32]bool {
	out := make(map[int32]bool)
	for _, b := range r.snapshot() {
		out[b.Partition] = true
	}
	return out
}

func (r *recorder) records() []kafka.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []kafka.Record
	for _, b := range r.batches {
		out = append(out, b.Records...)
	}
	return out
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, b := range r.batches {
		n += len(b.Records)
	}
	return n
}

// hasValues reports whether every value in want was seen at least once.
func (r *recorder) hasValues(want map[string]bool) bool {
	seen := make(map[string]bool, len(want))
	for _, rec := range r.records() {
		seen[string(rec.Value)] = true
	}
	for v := range want {
		if !seen[v] {
			return false
		}
	}
	return true
}

// pos is a record's position in a topic.
type pos struct {
	partition int32
	offset    int64
}

// endOffsets returns, per partition, one past the highest offset in recs.
func endOffsets(recs []kafka.Record) map[int32]int64 {
	ends := make(map[int32]int64)
	for _, r := range recs {
		if r.Offset+1 > ends[r.Partition] {
			ends[r.Partition] = r.Offset + 1
		}
	}
	return ends
}

// sameBytes compares byte slices treating nil and empty as equal: the port
// does not distinguish a null value from an empty one.
func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }

func sameHeaders(a, b []kafka.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !sameBytes(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// testRoundTrip: every record comes back exactly as produced (key, value,
// headers in order, including duplicate header keys, empty values and
// binary bytes), once, with Topic, Partition, Offset and Time set.
func testRoundTrip(t *testing.T, f Factory) {
	const partitions = 3
	e := newEnv(t, f, partitions)
	start := time.Now()

	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	large := make([]byte, 64<<10)
	for i := range large {
		large[i] = byte(i*7 + i>>8)
	}
	recs := []kafka.Record{
		{Key: []byte("plain"), Value: []byte(`{"kind":"Event"}`), Headers: []kafka.Header{
			{Key: "cluster", Value: []byte("cls-1")},
			{Key: "source", Value: []byte("webhook")},
			{Key: "dup", Value: []byte("first")},
			{Key: "dup", Value: []byte("second")},
			{Key: "empty", Value: nil},
		}},
		{Key: []byte("empty-value"), Value: []byte{}, Headers: []kafka.Header{{Key: "h", Value: []byte("v")}}},
		{Key: []byte("no-headers"), Value: []byte("v")},
		{Key: append([]byte("bin-"), allBytes...), Value: allBytes, Headers: []kafka.Header{{Key: "bin", Value: allBytes}}},
		{Key: []byte("large"), Value: large, Headers: []kafka.Header{{Key: "size", Value: []byte("64KiB")}}},
	}
	for i := range 25 {
		recs = append(recs, kafka.Record{
			Key:   []byte(fmt.Sprintf("key-%02d", i)),
			Value: []byte(fmt.Sprintf("value-%02d", i)),
			Headers: []kafka.Header{
				{Key: "a", Value: []byte(strconv.Itoa(i))},
				{Key: "b", Value: []byte{0, byte(i), 0xff}},
				{Key: "c", Value: []byte("")},
			},
		})
	}
	for i := range recs {
		recs[i].Topic = e.topic
	}

	p := e.producer()
	e.produce(p, recs)

	rec := newRecorder(t, e.topic, 0)
	g := e.newGroup("roundtrip", 0)
	r := startRun(t, g, rec.handler())
	waitFor(t, fmt.Sprintf("%d records", len(recs)), func() bool { return rec.count() >= len(recs) })
	r.stop("round trip")

	got := rec.records()
	require.Len(t, got, len(recs), "records consumed")
	byKey := make(map[string]kafka.Record, len(got))
	seenPos := make(map[pos]bool)
	for _, g := range got {
		_, dup := byKey[string(g.Key)]
		require.False(t, dup, "key %q consumed twice", g.Key)
		byKey[string(g.Key)] = g
		require.False(t, seenPos[pos{g.Partition, g.Offset}], "position %d@%d consumed twice", g.Partition, g.Offset)
		seenPos[pos{g.Partition, g.Offset}] = true
	}
	for _, want := range recs {
		g, ok := byKey[string(want.Key)]
		require.True(t, ok, "record with key %q not consumed", want.Key)
		require.Equal(t, e.topic, g.Topic, "topic of %q", want.Key)
		require.True(t, g.Partition >= 0 && g.Partition < partitions, "partition %d of %q", g.Partition, want.Key)
		require.GreaterOrEqual(t, g.Offset, int64(0), "offset of %q", want.Key)
		require.True(t, sameBytes(want.Value, g.Value), "value of %q: got %q, want %q", want.Key, g.Value, want.Value)
		require.True(t, sameHeaders(want.Headers, g.Headers), "headers of %q: got %v, want %v", want.Key, g.Headers, want.Headers)
		// Time is the broker's or producer's timestamp: not checked to the
		// second (clocks and brokers differ), only that it is a real time
		// in the right unit, not zero or off by orders of magnitude.
		require.WithinDuration(t, start, g.Time, time.Hour, "time of %q", want.Key)
	}
	require.Equal(t, []byte("first"), byKey["plain"].HeaderValue("dup"), "HeaderValue returns the first of duplicate headers")
}

// testPerKeyOrder: many keys with many records each across 8 partitions;
// per key the consumed order is the produced order, and a key always lands
// in the same partition, the one ReferencePartition names.
func testPerKeyOrder(t *testing.T, f Factory) {
	const (
		partitions = 8
		keys       = 40
		perKey     = 25
		maxBatch   = 16
	)
	e := newEnv(t, f, partitions)
	var all []kafka.Record
	for seq := range perKey {
		for k := range keys {
			all = append(all, kafka.Record{
				Topic: e.topic,
				Key:   []byte(fmt.Sprintf("key-%02d", k)),
				Value: []byte(fmt.Sprintf("key-%02d/%04d", k, seq)),
			})
		}
	}
	p := e.producer()
	// Several Produce calls, so that order has to hold across calls too.
	for chunk := range slices.Chunk(all, 100) {
		e.produce(p, chunk)
	}

	rec := newRecorder(t, e.topic, maxBatch)
	g := e.newGroup("order", maxBatch)
	r := startRun(t, g, rec.handler())
	waitFor(t, fmt.Sprintf("%d records", len(all)), func() bool { return rec.count() >= len(all) })
	r.stop("per-key order")

	got := rec.records()
	require.Len(t, got, len(all), "records consumed (no duplicates without failures)")
	seqs := make(map[string][]int)
	parts := make(map[string]int32)
	used := make(map[int32]bool)
	for _, g := range got {
		k := string(g.Key)
		var seq int
		_, err := fmt.Sscanf(string(g.Value), k+"/%d", &seq)
		require.NoError(t, err, "value %q of key %q", g.Value, k)
		seqs[k] = append(seqs[k], seq)
		if p, ok := parts[k]; ok {
			require.Equal(t, p, g.Partition, "key %q in two partitions", k)
		}
		parts[k] = g.Partition
		used[g.Partition] = true
	}
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	for k := range keys {
		key := fmt.Sprintf("key-%02d", k)
		require.Equal(t, want, seqs[key], "order of key %q", key)
		require.Equal(t, ReferencePartition([]byte(key), partitions), parts[key],
			"partition of key %q: adapters must use FNV-1a like sarama's hash partitioner and kafka-go's kafka.Hash", key)
	}
	require.GreaterOrEqual(t, len(used), 4, "keys spread over partitions %v", slices.Sorted(maps.Keys(used)))
}

var errConformanceBoom = errors.New("conformance: handler failed on purpose")

// testRedelivery: a handler error stops the member and Run returns it
// (errors.Is works); nothing of the failed batch is committed; Run again
// redelivers every uncommitted record, including the failed batch, and
// nothing below the committed offsets; a clean stop then commits
// everything.
func testRedelivery(t *testing.T, f Factory) {
	const (
		partitions = 4
		total      = 80
		maxBatch   = 5
		failOnCall = 3
	)
	e := newEnv(t, f, partitions)
	var recs []kafka.Record
	for i := range total {
		recs = append(recs, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("k-%03d", i)), Value: []byte(fmt.Sprintf("r-%03d", i))})
	}
	e.produce(e.producer(), recs)

	// Run 1: the failOnCall-th call fails. Calls for other partitions may
	// be in flight at the same time and succeed.
	var (
		mu     sync.Mutex
		calls  int
		failed *kafka.Batch
		okRecs = newRecorder(t, e.topic, maxBatch)
	)
	h1 := kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		mu.Lock()
		calls++
		fail := calls == failOnCall
		if fail {
			failed = &b
		}
		mu.Unlock()
		if fail {
			okRecs.check(b)
			return fmt.Errorf("batch %s/%d: %w", b.Topic, b.Partition, errConformanceBoom)
		}
		okRecs.add(b)
		return nil
	})
	g := e.newGroup("redelivery", maxBatch)
	r1 := startRun(t, g, h1)
	err := r1.wait("run after a handler error")
	require.Error(t, err, "Run must return the handler's error")
	require.ErrorIs(t, err, errConformanceBoom, "Run's error must wrap the handler's error")
	mu.Lock()
	require.NotNil(t, failed, "failing batch")
	fb := *failed
	mu.Unlock()
	failedFirst := fb.Records[0].Offset

	// Nothing of the failed batch is committed, and commits only ever sit
	// on the end of a batch that succeeded.
	c1 := e.committed()
	t.Logf("failed batch %d@%d-%d, committed after run 1: %v", fb.Partition, failedFirst, fb.Records[len(fb.Records)-1].Offset, c1)
	if off, ok := c1[fb.Partition]; ok {
		require.LessOrEqual(t, off, failedFirst, "partition %d committed past the start of the failed batch", fb.Partition)
	}
	okEnds := make(map[pos]bool)
	for _, b := range okRecs.snapshot() {
		okEnds[pos{b.Partition, b.Records[len(b.Records)-1].Offset + 1}] = true
	}
	for p, off := range c1 {
		require.True(t, okEnds[pos{p, off}], "partition %d committed at %d, which is not the end of a successful batch (committed %v)", p, off, c1)
	}

	// Run 2 on the same member rejoins and gets every uncommitted record:
	// all but those run 1 handled below the committed offsets.
	first := okRecs.records()
	need := make(map[string]bool)
	for _, r := range recs {
		need[string(r.Value)] = true
	}
	for _, r := range first {
		if r.Offset < c1[r.Partition] {
			delete(need, string(r.Value))
		}
	}
	rec2 := newRecorder(t, e.topic, maxBatch)
	r2 := startRun(t, g, rec2.handler())
	waitFor(t, fmt.Sprintf("the %d uncommitted records delivered again", len(need)), func() bool { return rec2.hasValues(need) })
	got2 := rec2.records()
	delivered2 := make(map[pos]bool)
	for _, r := range got2 {
		delivered2[pos{r.Partition, r.Offset}] = true
		require.GreaterOrEqual(t, r.Offset, c1[r.Partition],
			"record %d@%d redelivered although committed (committed %v)", r.Partition, r.Offset, c1)
	}
	for _, r := range fb.Records {
		require.True(t, delivered2[pos{r.Partition, r.Offset}], "record %d@%d of the failed batch not delivered again", r.Partition, r.Offset)
	}
	for _, r := range first {
		if r.Offset >= c1[r.Partition] {
			require.True(t, delivered2[pos{r.Partition, r.Offset}], "uncommitted record %d@%d not delivered again", r.Partition, r.Offset)
		}
	}

	// A clean stop commits everything that was handled.
	r2.stop("run 2")
	all := append(first, got2...)
	all = append(all, fb.Records...)
	require.Equal(t, endOffsets(all), e.committed(), "committed offsets after a clean stop")
}

// testNoCommitAfterRevoke: member A blocks in its handler on every
// partition; member B joins; A's handler context must be canceled for the
// partitions it loses, A must not commit the batches it returns late, and
// those records are delivered again.
func testNoCommitAfterRevoke(t *testing.T, f Factory) {
	const (
		partitions = 4
		total      = 200
		maxBatch   = 5
	)
	e := newEnv(t, f, partitions)
	var recs []kafka.Record
	for i := range total {
		recs = append(recs, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("k-%03d", i)), Value: []byte(fmt.Sprintf("r-%03d", i))})
	}
	e.produce(e.producer(), recs)

	var (
		mu         sync.Mutex
		heldFirst  = make(map[int32]int64) // A's first held batch per partition
		revokedA   = make(map[int32]bool)  // partitions whose held batch saw ctx canceled
		deliveries = make(map[pos]int)     // by A and B together
		releaseA   = make(chan struct{})
		releaseB   = make(chan struct{})
	)
	// Deferred calls run before the cleanups that cancel and await the
	// runs, so blocked handlers are let go first even when the test fails
	// halfway and the adapter does not cancel handler contexts on stop.
	var releaseOnceA, releaseOnceB sync.Once
	freeA := func() { releaseOnceA.Do(func() { close(releaseA) }) }
	freeB := func() { releaseOnceB.Do(func() { close(releaseB) }) }
	defer freeA()
	defer freeB()
	recA := newRecorder(t, e.topic, maxBatch)
	hA := kafka.HandlerFunc(func(ctx context.Context, b kafka.Batch) error {
		recA.check(b)
		mu.Lock()
		if _, ok := heldFirst[b.Partition]; !ok {
			heldFirst[b.Partition] = b.Records[0].Offset
		}
		for _, r := range b.Records {
			deliveries[pos{r.Partition, r.Offset}]++
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			mu.Lock()
			revokedA[b.Partition] = true
			mu.Unlock()
		case <-releaseA:
		}
		// Returning nil late: the batch looks done, but the partition is
		// gone, so the adapter must not commit it.
		return nil
	})
	recB := newRecorder(t, e.topic, maxBatch)
	hB := kafka.HandlerFunc(func(ctx context.Context, b kafka.Batch) error {
		recB.add(b)
		mu.Lock()
		for _, r := range b.Records {
			deliveries[pos{r.Partition, r.Offset}]++
		}
		mu.Unlock()
		// B never finishes a batch while the test looks at commits, so any
		// commit the test sees would be A's.
		select {
		case <-ctx.Done():
		case <-releaseB:
		}
		return nil
	})

	gA := e.newGroup("member-a", maxBatch)
	rA := startRun(t, gA, hA)
	waitFor(t, "member A holding a batch on every partition", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heldFirst) == partitions
	})

	gB := e.newGroup("member-b", maxBatch)
	rB := startRun(t, gB, hB)
	waitFor(t, "member A's handler context canceled after member B joined", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(revokedA) > 0
	})
	// Wait until every revoked partition is read again, by B or by A
	// after it got the partition back.
	waitFor(t, "the partitions revoked from A consumed again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		byB := recB.partitions()
		for p := range revokedA {
			if deliveries[pos{p, heldFirst[p]}] < 2 && !byB[p] {
				return false
			}
		}
		return true
	})
	// No handler has returned while it owned its partition, so nothing may
	// be committed.
	require.Empty(t, e.committed(), "committed offsets while no batch finished in time: A committed after a revoke")
	mu.Lock()
	revoked := maps.Clone(revokedA)
	held := maps.Clone(heldFirst)
	again := make(map[int32]int)
	for p := range revoked {
		again[p] = deliveries[pos{p, held[p]}]
	}
	mu.Unlock()
	for p, n := range again {
		require.GreaterOrEqual(t, n, 2, "partition %d: the batch A held at offset %d was not delivered again", p, held[p])
	}

	// After A stopped, whatever it might still commit has been committed.
	// Only partitions B owns are checked: with an eager protocol A may get
	// some revoked partitions back and may rightly commit those when its
	// held batches are released.
	ownedByB := recB.partitions()
	rA.cancel()
	freeA()
	require.NoError(t, rA.wait("member A"), "member A: Run after its context was canceled")
	c := e.committed()
	t.Logf("A held batches at %v, revoked from A: %v, consumed by B: %v, committed after A stopped: %v", held, revoked, ownedByB, c)
	checked := 0
	for p := range revoked {
		if !ownedByB[p] {
			continue
		}
		checked++
		if off, ok := c[p]; ok {
			require.LessOrEqual(t, off, held[p], "partition %d: member A committed a batch it finished after the partition was revoked", p)
		}
	}
	require.Positive(t, checked, "partitions revoked from A and consumed by B (revoked %v, B has %v)", revoked, ownedByB)
	freeB()
	rB.stop("member B")
}

// testCleanShutdown: canceling Run's context makes Run return nil with the
// offsets of everything handled committed; Close is safe twice and without
// Run; a new member of the group starts after the committed offsets and
// redelivers nothing.
func testCleanShutdown(t *testing.T, f Factory) {
	const partitions = 4
	e := newEnv(t, f, partitions)
	p := e.producer()
	var recs []kafka.Record
	for i := range 60 {
		recs = append(recs, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("k-%03d", i)), Value: []byte(fmt.Sprintf("r-%03d", i))})
	}
	e.produce(p, recs)

	rec := newRecorder(t, e.topic, 7)
	g1 := e.newGroup("shutdown-1", 7)
	r1 := startRun(t, g1, rec.handler())
	waitFor(t, "60 records", func() bool { return rec.count() >= len(recs) })
	r1.stop("member 1")
	ends := endOffsets(rec.records())
	require.Equal(t, ends, e.committed(), "committed offsets after a clean stop")
	require.NoError(t, g1.Close(), "Close after Run")
	require.NoError(t, g1.Close(), "second Close")

	unused := e.newGroup("never-run", 0)
	require.NoError(t, unused.Close(), "Close without Run")

	// A new member resumes after the commits: it sees the new records only.
	var more []kafka.Record
	want := make(map[string]bool)
	for i := range 8 {
		v := fmt.Sprintf("more-%d", i)
		want[v] = true
		more = append(more, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("m-%d", i)), Value: []byte(v)})
	}
	e.produce(p, more)
	rec2 := newRecorder(t, e.topic, 0)
	g2 := e.newGroup("shutdown-2", 0)
	r2 := startRun(t, g2, rec2.handler())
	waitFor(t, "the records produced after the restart", func() bool { return rec2.hasValues(want) })
	r2.stop("member 2")
	for _, r := range rec2.records() {
		require.GreaterOrEqual(t, r.Offset, ends[r.Partition], "record %d@%d (%q) redelivered after a clean restart", r.Partition, r.Offset, r.Value)
	}
	require.Len(t, rec2.records(), len(more), "records after restart")

	require.NoError(t, p.Close(), "producer Close")
	require.NoError(t, p.Close(), "second producer Close")
}

// offsetOwner is a recorder's handler that is a kafka.OffsetOwner.
type offsetOwner struct {
	kafka.Handler
	commits bool
}

func (o offsetOwner) CommitsOffsets() bool { return o.commits }

// testHandlerCommitsOffsets: a handler that is a kafka.OffsetOwner
// reporting true gets every record, and the member commits no offset of
// its own, not even on a clean stop (a transactional handler commits
// them; a late commit by the member could move them back). One reporting
// false is committed for as any handler.
func testHandlerCommitsOffsets(t *testing.T, f Factory) {
	const partitions = 3
	e := newEnv(t, f, partitions)
	var recs []kafka.Record
	for i := range 30 {
		recs = append(recs, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("k-%03d", i)), Value: []byte(fmt.Sprintf("r-%03d", i))})
	}
	e.produce(e.producer(), recs)

	rec := newRecorder(t, e.topic, 4)
	g := e.newGroup("owner", 4)
	r := startRun(t, g, offsetOwner{Handler: rec.handler(), commits: true})
	waitFor(t, fmt.Sprintf("%d records", len(recs)), func() bool { return rec.count() >= len(recs) })
	r.stop("offset owner")
	require.Empty(t, e.committed(), "offsets committed by the member although its handler commits them")

	rec2 := newRecorder(t, e.topic, 4)
	r2 := startRun(t, g, offsetOwner{Handler: rec2.handler(), commits: false})
	waitFor(t, "the records again", func() bool { return rec2.count() >= len(recs) })
	r2.stop("not an offset owner")
	require.Equal(t, endOffsets(rec2.records()), e.committed(), "committed offsets after a clean stop")
}

// syncHandler is a kafka.Syncer: Handle makes its batches pending, Sync
// makes what is pending durable (slowly, so that batches return while it
// runs) after checking that every committed offset is durable.
type syncHandler struct {
	t       *testing.T
	e       *env
	rec     *recorder
	failOn  int // the failOn-th Sync fails (0: none)
	mu      sync.Mutex
	pending map[int32]int64 // partition → offset after the last handled record
	durable map[int32]int64
	syncs   int
}

func (h *syncHandler) Handle(_ context.Context, b kafka.Batch) error {
	h.rec.add(b)
	h.mu.Lock()
	h.pending[b.Partition] = b.Records[len(b.Records)-1].Offset + 1
	h.mu.Unlock()
	return nil
}

func (h *syncHandler) Sync(context.Context) error {
	// Commits happen only after a Sync returned: whatever is committed
	// now was durable when the last Sync ended.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	committed, err := h.e.admin.CommittedOffsets(ctx, h.e.group, h.e.topic)
	if err != nil {
		h.t.Errorf("committed offsets of group %s: %v", h.e.group, err) // not on the test's goroutine: no FailNow
	}
	h.mu.Lock()
	h.syncs++
	n := h.syncs
	for p, off := range committed {
		if off > h.durable[p] {
			h.t.Errorf("partition %d: offset %d committed, but only records before %d were synced", p, off, h.durable[p])
		}
	}
	pending := maps.Clone(h.pending)
	h.mu.Unlock()
	if n == h.failOn {
		return errConformanceBoom
	}
	time.Sleep(30 * time.Millisecond) // batches keep returning meanwhile
	h.mu.Lock()
	for p, off := range pending {
		h.durable[p] = max(h.durable[p], off)
	}
	h.mu.Unlock()
	return nil
}

// testSyncBeforeCommit: a handler that is a kafka.Syncer gets Sync before
// offsets are committed, and only offsets of batches that returned before
// that Sync began are committed (a slow Sync with batches returning during
// it shows a member that commits a later mark). A clean stop syncs and
// commits everything. A failing Sync stops Run with its error, and
// nothing it did not cover is committed (partitions whose own Sync
// succeeded may commit: kafka-go syncs per partition).
func testSyncBeforeCommit(t *testing.T, f Factory) {
	const partitions = 3
	e := newEnv(t, f, partitions)
	var recs []kafka.Record
	for i := range 300 {
		recs = append(recs, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("k-%03d", i)), Value: []byte(fmt.Sprintf("r-%03d", i))})
	}
	e.produce(e.producer(), recs)

	h := &syncHandler{t: t, e: e, rec: newRecorder(t, e.topic, 5), pending: map[int32]int64{}, durable: map[int32]int64{}}
	g := e.newGroup("syncer", 5)
	r := startRun(t, g, h)
	waitFor(t, fmt.Sprintf("%d records", len(recs)), func() bool { return h.rec.count() >= len(recs) })
	r.stop("syncer")
	want := endOffsets(h.rec.records())
	require.Equal(t, want, e.committed(), "committed offsets after a clean stop")
	h.mu.Lock()
	require.Positive(t, h.syncs, "Sync was never called")
	require.Equal(t, want, h.durable, "a committed offset was never synced")
	h.mu.Unlock()

	// A failing Sync stops the member with its error; what it did not
	// sync stays uncommitted.
	more := make([]kafka.Record, 0, 30)
	for i := range 30 {
		more = append(more, kafka.Record{Topic: e.topic, Key: []byte(fmt.Sprintf("m-%03d", i)), Value: []byte(fmt.Sprintf("m-%03d", i))})
	}
	e.produce(e.producer(), more)
	h2 := &syncHandler{t: t, e: e, rec: newRecorder(t, e.topic, 5), failOn: 1, pending: map[int32]int64{}, durable: maps.Clone(want)}
	r2 := startRun(t, g, h2)
	err := r2.wait("run with a failing Sync")
	require.ErrorIs(t, err, errConformanceBoom, "Run returns the Sync error")
	h2.mu.Lock()
	defer h2.mu.Unlock()
	for p, off := range e.committed() {
		require.LessOrEqual(t, off, h2.durable[p], "partition %d: committed past what was synced, after a failed Sync", p)
	}
}

// testAdmin: EnsureTopics is idempotent, alone and mixed with new topics;
// CommittedOffsets of a group without commits is empty, not an error.
// (That it reports commits is checked by the group tests.)
func testAdmin(t *testing.T, f Factory) {
	e := newEnv(t, f, 3)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	spec := kafka.TopicSpec{Name: e.topic, Partitions: 3, ReplicationFactor: 1}
	require.NoError(t, e.admin.EnsureTopics(ctx, spec), "EnsureTopics of an existing topic")
	other := kafka.TopicSpec{Name: e.topic + "-other", Partitions: 2, ReplicationFactor: 1}
	require.NoError(t, e.admin.EnsureTopics(ctx, spec, other), "EnsureTopics of an existing and a new topic")
	require.NoError(t, e.admin.EnsureTopics(ctx, other), "EnsureTopics of the new topic again")

	offs, err := e.admin.CommittedOffsets(ctx, e.group+"-none", e.topic)
	require.NoError(t, err, "CommittedOffsets of a group without commits")
	require.Empty(t, offs, "CommittedOffsets of a group without commits")

	// The new topic exists with its partitions: a produced record lands in
	// the partition the key hashes to among 2.
	p := e.producer()
	key := []byte("admin-key")
	ctxP, cancelP := context.WithTimeout(context.Background(), waitTimeout)
	defer cancelP()
	require.NoError(t, p.Produce(ctxP, kafka.Record{Topic: other.Name, Key: key, Value: []byte("v")}), "produce to the new topic")
	rec := newRecorder(t, other.Name, 0)
	g := e.f.NewGroup(t, kafka.GroupConfig{
		Brokers: e.brokers, Group: e.group, Topics: []string{other.Name},
		MaxWait: 20 * time.Millisecond, SessionTimeout: testSessionTimeout,
	})
	r := startRun(t, g, rec.handler())
	waitFor(t, "the record on the new topic", func() bool { return rec.count() >= 1 })
	r.stop("admin group")
	got := rec.records()[0]
	require.Equal(t, ReferencePartition(key, 2), got.Partition, "partition on the 2-partition topic")

	offs, err = e.admin.CommittedOffsets(ctx, e.group, other.Name)
	require.NoError(t, err, "CommittedOffsets after a commit")
	require.Equal(t, map[int32]int64{got.Partition: got.Offset + 1}, offs, "CommittedOffsets after a commit")
}

// testProducerErrors: a record over MaxMessageBytes fails with an error
// that names the topic; a canceled context fails the call.
func testProducerErrors(t *testing.T, f Factory) {
	e := newEnv(t, f, 1)
	p := e.f.NewProducer(t, kafka.ProducerConfig{Brokers: e.brokers, ClientID: "conformance-small", MaxMessageBytes: 1024})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	require.NoError(t, p.Produce(ctx, kafka.Record{Topic: e.topic, Key: []byte("k"), Value: []byte("small")}), "small record")
	err := p.Produce(ctx, kafka.Record{Topic: e.topic, Key: []byte("k"), Value: make([]byte, 4096)})
	require.Error(t, err, "record larger than MaxMessageBytes")
	require.Contains(t, err.Error(), e.topic, "the error names the topic")

	canceled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	require.Error(t, p.Produce(canceled, kafka.Record{Topic: e.topic, Key: []byte("k"), Value: []byte("late")}), "Produce with a canceled context")
}
