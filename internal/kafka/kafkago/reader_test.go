package kafkago_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

func newReader(tb testing.TB, brokers []string, maxBatch int) *kafkago.Reader {
	tb.Helper()
	r, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers, ClientID: "reader-test", MaxBatch: maxBatch})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// readAll reads a range and returns the values in the order delivered.
func readAll(tb testing.TB, r kafka.PartitionReader, topic string, p int32, rg kafka.OffsetRange) []kafka.Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kafka.Record
	err := r.ReadRange(ctx, topic, p, rg, func(_ context.Context, b kafka.Batch) error {
		require.Equal(tb, topic, b.Topic)
		require.Equal(tb, p, b.Partition)
		require.LessOrEqual(tb, len(b.Records), 7, "MaxBatch not honoured")
		out = append(out, b.Records...)
		return nil
	})
	require.NoError(tb, err)
	return out
}

func TestReaderRangesAndTimes(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 2)
	r := newReader(t, e.brokers, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ids, err := r.Partitions(ctx, topic)
	require.NoError(t, err)
	require.Equal(t, []int32{0, 1}, ids)

	// Two phases separated in time, all on partition 0 (one key) except a
	// few on partition 1, so time lookups have something to find.
	first := records(topic, 30, 1)
	require.NoError(t, e.prod.Produce(ctx, first...))
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	second := records(topic, 20, 1)
	for i := range second {
		second[i].Value = fmt.Appendf(nil, "second-%d", i)
	}
	require.NoError(t, e.prod.Produce(ctx, second...))

	bounds, err := r.Bounds(ctx, topic)
	require.NoError(t, err)
	var p int32 = -1
	for id, b := range bounds {
		if b.End == 50 {
			p = id
		}
	}
	require.NotEqual(t, int32(-1), p, "all records of one key on one partition: %v", bounds)
	require.Equal(t, kafka.OffsetRange{Start: 0, End: 50}, bounds[p])
	require.Equal(t, kafka.OffsetRange{Start: 0, End: 0}, bounds[1-p])

	at, err := r.OffsetsForTime(ctx, topic, mid)
	require.NoError(t, err)
	require.Equal(t, int64(30), at[p], "first offset after mid is the first of the second phase")
	require.Equal(t, int64(0), at[1-p], "empty partition answers its high watermark")
	later, err := r.OffsetsForTime(ctx, topic, time.Now().Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, int64(50), later[p], "no record after t: the high watermark")

	got := readAll(t, r, topic, p, kafka.OffsetRange{Start: 25, End: 33})
	require.Len(t, got, 8)
	for i, rec := range got {
		require.Equal(t, int64(25+i), rec.Offset)
	}
	require.Equal(t, "value-25", string(got[0].Value))
	require.Equal(t, "second-2", string(got[7].Value))
	require.Equal(t, "27", string(got[2].HeaderValue("seq")))
	require.False(t, got[0].Time.IsZero())

	// Empty range and the whole partition.
	require.Empty(t, readAll(t, r, topic, p, kafka.OffsetRange{Start: 10, End: 10}))
	require.Len(t, readAll(t, r, topic, p, kafka.OffsetRange{Start: 0, End: 50}), 50)
}

func TestReaderStopsOnHandlerErrorAndContext(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 1)
	r := newReader(t, e.brokers, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, e.prod.Produce(ctx, records(topic, 20, 1)...))

	boom := errors.New("boom")
	calls := 0
	err := r.ReadRange(ctx, topic, 0, kafka.OffsetRange{Start: 0, End: 20}, func(context.Context, kafka.Batch) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 2, calls, "nothing is handed over after a failure")

	cctx, ccancel := context.WithCancel(ctx)
	err = r.ReadRange(cctx, topic, 0, kafka.OffsetRange{Start: 0, End: 20}, func(context.Context, kafka.Batch) error {
		ccancel()
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)

	// A range that reaches past the high watermark cannot be completed:
	// ReadRange waits for the records (the caller fixes ends at the high
	// watermark), so it ends with the context.
	tctx, tcancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer tcancel()
	n := 0
	err = r.ReadRange(tctx, topic, 0, kafka.OffsetRange{Start: 18, End: 25}, func(_ context.Context, b kafka.Batch) error {
		n += len(b.Records)
		return nil
	})
	require.Error(t, err)
	require.Equal(t, 2, n)
}

func TestReaderRangeBelowLogStartFails(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 1)
	r := newReader(t, e.brokers, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, e.prod.Produce(ctx, records(topic, 3, 1)...))
	err := r.ReadRange(ctx, topic, 0, kafka.OffsetRange{Start: 10, End: 12}, func(context.Context, kafka.Batch) error { return nil })
	require.Error(t, err)
	require.Contains(t, err.Error(), "offset 10")
}

func TestGroupOffsetsResetRefusesActiveGroup(t *testing.T) {
	e := setup(t)
	topic := e.topic(t, 2)
	r := newReader(t, e.brokers, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, e.prod.Produce(ctx, records(topic, 40, 8)...))

	group := topic + ".group" // unique on a shared external cluster too
	info, err := r.DescribeGroup(ctx, "nobody-"+topic)
	require.NoError(t, err)
	require.Empty(t, info.Members)

	// An active sarama member (cooperative-sticky metadata, which
	// kafka-go's own DescribeGroups cannot decode) consumes everything.
	g, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: e.brokers, Group: group, Topics: []string{topic}, SessionTimeout: 6 * time.Second, MaxWait: 20 * time.Millisecond}) // 6 s: Apache Kafka's group.min.session.timeout.ms
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	c := newCollector()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- g.Run(runCtx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error { c.add(b); return nil }))
	}()
	c.waitDistinct(t, 40)
	require.Eventually(t, func() bool {
		off, err := r.CommittedOffsets(ctx, group, topic)
		return err == nil && off[0]+off[1] == 40
	}, 20*time.Second, 50*time.Millisecond)

	info, err = r.DescribeGroup(ctx, group)
	require.NoError(t, err)
	require.Len(t, info.Members, 1, "state %s", info.State)
	err = r.ResetOffsets(ctx, group, topic, map[int32]int64{0: 0, 1: 0})
	require.ErrorIs(t, err, kafka.ErrGroupActive)
	off, err := r.CommittedOffsets(ctx, group, topic)
	require.NoError(t, err)
	require.Equal(t, int64(40), off[0]+off[1], "a refused reset changes nothing")

	stop()
	require.NoError(t, <-done)
	require.NoError(t, g.Close())
	require.Eventually(t, func() bool {
		info, err := r.DescribeGroup(ctx, group)
		return err == nil && len(info.Members) == 0
	}, 20*time.Second, 50*time.Millisecond)

	require.NoError(t, r.ResetOffsets(ctx, group, topic, map[int32]int64{0: 1, 1: 2}))
	off, err = r.CommittedOffsets(ctx, group, topic)
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 1, 1: 2}, off)
}

// TestReaderSeesNewTopics: kafka-go serves metadata from a cache, so a
// topic created by another client after the reader warmed it must still
// be found; a topic that does not exist fails with a clear error.
func TestReaderSeesNewTopics(t *testing.T) {
	e := setup(t)
	first := e.topic(t, 1)
	r := newReader(t, e.brokers, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := r.Partitions(ctx, first)
	require.NoError(t, err)

	second := first + ".later"
	require.NoError(t, e.admin.EnsureTopics(ctx, kafka.TopicSpec{Name: second, Partitions: 3, ReplicationFactor: 1}))
	bounds, err := r.Bounds(ctx, second)
	require.NoError(t, err)
	require.Len(t, bounds, 3)

	_, err = r.Partitions(ctx, "no-such-topic")
	require.ErrorContains(t, err, "partitions of no-such-topic")
}
