package saramakafka

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// TestGroupRefusedSessionTimeoutIsFatal: a session timeout the broker
// refuses (an hour: above group.max.session.timeout.ms, 30 min by default
// on Apache Kafka and kfake) can never join, so Run reports it instead of
// retrying forever with the member idle.
func TestGroupRefusedSessionTimeoutIsFatal(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	admin, err := NewAdmin(brokers, "session-admin")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	topic := "session-" + suffix
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}))
	g, err := NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "session-" + suffix, Topics: []string{topic}, SessionTimeout: time.Hour})
	require.NoError(t, err)
	defer g.Close()
	err = g.Run(ctx, kafka.HandlerFunc(func(context.Context, kafka.Batch) error { return nil }))
	require.ErrorIs(t, err, sarama.ErrInvalidSessionTimeout)
	require.NoError(t, ctx.Err(), "Run returned only when the test gave up")
}

// TestGroupPreparesOnlyNewPartitions: a handler that is a
// kafka.AssignmentPreparer hears of each partition when its member gets
// it, before the partition's first batch, and not again for partitions it
// keeps through a rebalance (fencing those would abort its own work).
func TestGroupPreparesOnlyNewPartitions(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	admin, err := NewAdmin(brokers, "prepare-admin")
	require.NoError(t, err)
	defer admin.Close()
	topic, group := "prepare-"+suffix, "prepare-"+suffix
	require.NoError(t, admin.EnsureTopics(t.Context(), kafka.TopicSpec{Name: topic, Partitions: 4, ReplicationFactor: 1}))
	prod, err := NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	defer prod.Close()
	produce := func() {
		var recs []kafka.Record
		for i := range 40 {
			recs = append(recs, kafka.Record{Topic: topic, Key: []byte(fmt.Sprint(suffix, i)), Value: []byte("v")})
		}
		require.NoError(t, prod.Produce(t.Context(), recs...))
	}
	produce()

	run := func(h *prepareRecorder) func() {
		g, err := NewGroup(kafka.GroupConfig{Brokers: brokers, Group: group, Topics: []string{topic}, MaxWait: 10 * time.Millisecond, SessionTimeout: 6 * time.Second})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx, h) }()
		return func() { cancel(); require.NoError(t, <-done); _ = g.Close() }
	}
	a, b := newPrepareRecorder(), newPrepareRecorder()
	stopA := run(a)
	defer stopA()
	require.Eventually(t, func() bool { return len(a.handledSet()) == 4 }, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, map[int32]int{0: 1, 1: 1, 2: 1, 3: 1}, a.preparedCounts())

	stopB := run(b)
	defer stopB()
	// Cooperative-sticky gives b two of a's partitions.
	require.Eventually(t, func() bool { return len(b.preparedCounts()) == 2 }, 30*time.Second, 10*time.Millisecond)
	produce()
	require.Eventually(t, func() bool { return len(b.handledSet()) == 2 }, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, map[int32]int{0: 1, 1: 1, 2: 1, 3: 1}, a.preparedCounts(), "a kept two partitions and was not told about them again")
	for p, n := range b.preparedCounts() {
		require.Equal(t, 1, n, "partition %d", p)
	}
	require.Empty(t, a.violations())
	require.Empty(t, b.violations())
}

// prepareRecorder records PrepareAssigned calls and checks that every
// batch comes from a partition prepared before.
type prepareRecorder struct {
	mu       sync.Mutex
	prepared map[int32]int
	handled  map[int32]bool
	bad      []string
}

func newPrepareRecorder() *prepareRecorder {
	return &prepareRecorder{prepared: map[int32]int{}, handled: map[int32]bool{}}
}

func (r *prepareRecorder) PrepareAssigned(_ context.Context, _ string, partitions []int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range partitions {
		r.prepared[p]++
	}
	return nil
}

func (r *prepareRecorder) Handle(_ context.Context, b kafka.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.prepared[b.Partition] == 0 {
		r.bad = append(r.bad, fmt.Sprintf("batch of partition %d before PrepareAssigned", b.Partition))
	}
	r.handled[b.Partition] = true
	return nil
}

func (r *prepareRecorder) preparedCounts() map[int32]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.prepared)
}

func (r *prepareRecorder) handledSet() map[int32]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.handled)
}

func (r *prepareRecorder) violations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// TestGroupRevokedClaimWaitsForItsCommit: a claim revoked while the commit
// of its last handled batch has not completed yet does not let the
// partition go before that commit landed, so the partition's next owner
// starts right after the batch (no record handled twice). The member's
// commits are held (beforeCommit) from its first batch until well after
// the revocation, or until the other member got the partition: a claim
// that returned without waiting would hand it over with nothing
// committed, and the other member would start at the partition's first
// record.
func TestGroupRevokedClaimWaitsForItsCommit(t *testing.T) {
	const (
		partitions = 2
		maxBatch   = 5
		// hold is how long commits stay held after the revocation when
		// the other member did not get the partition meanwhile (it must
		// not, while the revoked claim waits for its commit). Not a
		// speed bound: only how long the test gives a broken adapter to
		// hand the partition over.
		hold = 3 * time.Second
	)
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	admin, err := NewAdmin(brokers, "revoke-admin")
	require.NoError(t, err)
	defer admin.Close()
	topic, group := "revoke-commit-"+suffix, "revoke-commit-"+suffix
	require.NoError(t, admin.EnsureTopics(t.Context(), kafka.TopicSpec{Name: topic, Partitions: partitions, ReplicationFactor: 1}))
	prod, err := NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	defer prod.Close()
	var recs []kafka.Record
	for i := range 100 {
		recs = append(recs, kafka.Record{Topic: topic, Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")})
	}
	require.NoError(t, prod.Produce(t.Context(), recs...))

	var (
		mu        sync.Mutex
		calls     = map[int32]int{}
		handled   = map[int32]int64{} // A: end of its second (last finished) batch
		revoked   = map[int32]bool{}  // A: partitions whose held batch saw ctx canceled
		firstB    = map[int32]int64{} // B: first offset handled
		gate      = make(chan struct{})
		gateOnce  sync.Once
		releaseA  = make(chan struct{})
		revokedCh = make(chan struct{}, partitions)
		bGotOne   = make(chan struct{}, 1)
	)
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	defer close(releaseA)

	newMember := func(name string) *GroupConsumer {
		g, err := NewGroup(kafka.GroupConfig{Brokers: brokers, Group: group, Topics: []string{topic}, ClientID: name,
			MaxBatch: maxBatch, MaxWait: 10 * time.Millisecond, SessionTimeout: 6 * time.Second})
		require.NoError(t, err)
		return g
	}
	run := func(g *GroupConsumer, h kafka.Handler) func() {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx, h) }()
		return func() { cancel(); require.NoError(t, <-done); _ = g.Close() }
	}

	gA := newMember("member-a")
	gA.beforeCommit = func() { <-gate }
	stopA := run(gA, kafka.HandlerFunc(func(ctx context.Context, b kafka.Batch) error {
		mu.Lock()
		calls[b.Partition]++
		n := calls[b.Partition]
		if n <= 2 {
			handled[b.Partition] = b.Records[len(b.Records)-1].Offset + 1
		}
		mu.Unlock()
		if n <= 2 {
			return nil
		}
		// The third batch is held until the partition is revoked (or the
		// test ends): the second is then the last one A finished.
		select {
		case <-ctx.Done():
			mu.Lock()
			revoked[b.Partition] = true
			mu.Unlock()
			select {
			case revokedCh <- struct{}{}:
			default:
			}
		case <-releaseA:
		}
		return nil
	}))
	defer stopA()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) == partitions && calls[0] >= 3 && calls[1] >= 3
	}, 30*time.Second, 10*time.Millisecond, "member A holding its third batch of every partition")

	// Commits stay held until B got a partition, or for hold after A's
	// revocation.
	go func() {
		select {
		case <-revokedCh:
		case <-gate:
			return
		}
		select {
		case <-bGotOne:
		case <-time.After(hold):
		case <-gate:
		}
		openGate()
	}()
	gB := newMember("member-b")
	stopB := run(gB, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		mu.Lock()
		if _, ok := firstB[b.Partition]; !ok {
			firstB[b.Partition] = b.Records[0].Offset
		}
		mu.Unlock()
		select {
		case bGotOne <- struct{}{}:
		default:
		}
		return nil
	}))
	defer stopB()
	// Runs before the members stop: a claim waiting for a held commit
	// would keep its Run from returning.
	defer openGate()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(firstB) > 0
	}, 30*time.Second, 10*time.Millisecond, "member B handling a partition revoked from A")

	mu.Lock()
	defer mu.Unlock()
	t.Logf("A finished batches up to %v, revoked from A: %v, B started at %v", handled, revoked, firstB)
	for p, first := range firstB {
		require.True(t, revoked[p], "partition %d went to B without being revoked from A", p)
		require.Equal(t, handled[p], first, "partition %d: B must start right after the last batch A finished", p)
	}
}
