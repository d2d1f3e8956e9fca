package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// TestGroupsResetToTime: a live group has consumed everything; reset is
// refused while it runs, not applied without confirmation, and once
// confirmed moves every partition to the first record after the time.
func TestGroupsResetToTime(t *testing.T) {
	brokers, topic, times := rawTopic(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers})
	require.NoError(t, err)
	defer r.Close()
	mid, err := r.OffsetsForTime(ctx, topic, times[0])
	require.NoError(t, err)
	bounds, err := r.Bounds(ctx, topic)
	require.NoError(t, err)
	var total int64
	for p, b := range bounds {
		total += b.End
		require.Positive(t, mid[p], "partition %d has records before the time", p)
		require.Less(t, mid[p], b.End, "partition %d has records after the time", p)
	}

	// The processor's kind of member: sarama, cooperative-sticky.
	group := "auditpipe-processor." + topic // unique on a shared external cluster too
	g, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: group, Topics: []string{topic}, SessionTimeout: 2 * time.Second, MaxWait: 20 * time.Millisecond})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- g.Run(runCtx, kafka.HandlerFunc(func(context.Context, kafka.Batch) error { return nil }))
	}()
	require.Eventually(t, func() bool {
		off, err := r.CommittedOffsets(ctx, group, topic)
		var sum int64
		for _, o := range off {
			sum += o
		}
		return err == nil && sum == total
	}, 30*time.Second, 50*time.Millisecond)

	brk := strings.Join(brokers, ",")
	var out bytes.Buffer
	require.NoError(t, runGroups(ctx, []string{"describe", "--brokers", brk, "--group", group, "--topic", topic}, strings.NewReader(""), &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "members: auditpipe@")
	require.Contains(t, out.String(), "lag")

	reset := []string{"reset", "--brokers", brk, "--group", group, "--topic", topic, "--to-time", times[0].Format(time.RFC3339Nano)}
	err = runGroups(ctx, append(reset, "--yes"), strings.NewReader(""), &out, &bytes.Buffer{})
	require.ErrorIs(t, err, kafka.ErrGroupActive)

	stop()
	require.NoError(t, <-done)
	require.NoError(t, g.Close())
	require.Eventually(t, func() bool {
		info, err := r.DescribeGroup(ctx, group)
		return err == nil && len(info.Members) == 0
	}, 20*time.Second, 50*time.Millisecond)

	out.Reset()
	err = runGroups(ctx, reset, strings.NewReader("no\n"), &out, &bytes.Buffer{})
	require.ErrorContains(t, err, "not confirmed")
	require.Contains(t, out.String(), "new", "the planned offsets are shown before asking")
	off, err := r.CommittedOffsets(ctx, group, topic)
	require.NoError(t, err)
	for p, b := range bounds {
		require.Equal(t, b.End, off[p], "unconfirmed reset changed partition %d", p)
	}

	out.Reset()
	require.NoError(t, runGroups(ctx, reset, strings.NewReader("yes\n"), &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "After:")
	off, err = r.CommittedOffsets(ctx, group, topic)
	require.NoError(t, err)
	require.Equal(t, mid, off)

	require.ErrorContains(t, runGroups(ctx, []string{"reset", "--group", group, "--topic", topic}, strings.NewReader(""), &out, &bytes.Buffer{}), "--to-time is required")
	require.ErrorContains(t, runGroups(ctx, []string{"frob"}, strings.NewReader(""), &out, &bytes.Buffer{}), "describe or reset")
}
