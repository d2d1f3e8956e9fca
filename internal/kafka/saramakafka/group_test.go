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
