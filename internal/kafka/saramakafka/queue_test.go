package saramakafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

// pauseRecorder is a sarama.ConsumerGroup that only records Pause and
// Resume; the claim queue calls nothing else.
type pauseRecorder struct {
	sarama.ConsumerGroup

	mu      sync.Mutex
	calls   []string
	current bool
}

func (p *pauseRecorder) Pause(map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "pause")
	p.current = true
}

func (p *pauseRecorder) Resume(map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "resume")
	p.current = false
}

func msgs(from, n int) []*sarama.ConsumerMessage {
	out := make([]*sarama.ConsumerMessage, n)
	for i := range out {
		out[i] = &sarama.ConsumerMessage{Topic: "t", Partition: 1, Offset: int64(from + i)}
	}
	return out
}

func TestClaimQueuePausesWhileFull(t *testing.T) {
	g := &pauseRecorder{}
	q := newClaimQueue(g, "t", 1, 10)
	ctx := context.Background()

	for _, m := range msgs(0, 12) {
		q.push(m)
	}
	require.Equal(t, []string{"pause"}, g.calls, "pause once at the limit")

	got := q.next(ctx, 5, time.Hour)
	require.Len(t, got, 5, "a full batch does not wait")
	require.Equal(t, int64(0), got[0].Offset)
	require.True(t, g.current, "7 queued, still above half the limit")

	got = q.next(ctx, 5, time.Hour)
	require.Equal(t, int64(5), got[0].Offset)
	require.Equal(t, []string{"pause", "resume"}, g.calls, "resume below half the limit")

	// A short batch is handed over after wait.
	got = q.next(ctx, 5, 10*time.Millisecond)
	require.Len(t, got, 2)
	require.Equal(t, int64(10), got[0].Offset)

	// A claim that ends while paused resumes, and never pauses again.
	for _, m := range msgs(12, 10) {
		q.push(m)
	}
	require.True(t, g.current)
	q.finish()
	require.False(t, g.current, "finish resumes")
	for _, m := range msgs(22, 20) {
		q.push(m)
	}
	require.False(t, g.current, "no pause after finish")
}

func TestClaimQueueEnds(t *testing.T) {
	q := newClaimQueue(&pauseRecorder{}, "t", 1, 10)

	// Closed and empty: the claim is over.
	q.close()
	require.Nil(t, q.next(context.Background(), 5, time.Hour))

	// A canceled context hands out nothing, even with records queued: the
	// partition is gone and its next owner reads them.
	q = newClaimQueue(&pauseRecorder{}, "t", 1, 10)
	for _, m := range msgs(0, 3) {
		q.push(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Nil(t, q.next(ctx, 5, time.Hour))

	// Cancellation while waiting for the first record ends the wait.
	q = newClaimQueue(&pauseRecorder{}, "t", 1, 10)
	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	require.Nil(t, q.next(ctx, 5, time.Hour))
}
