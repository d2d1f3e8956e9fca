package group_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// toolTopic creates a 2-partition topic and writes records in two phases
// separated in time; it returns the brokers, the topic and the time
// between the phases.
func toolTopic(t *testing.T) ([]string, string, time.Time) {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	topic := strings.NewReplacer("/", ".").Replace(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}))
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	defer prod.Close()
	phase := func(n int) {
		recs := make([]kafka.Record, n)
		for i := range recs {
			recs[i] = kafka.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}
		}
		require.NoError(t, prod.Produce(ctx, recs...))
	}
	phase(20)
	time.Sleep(15 * time.Millisecond)
	mid := time.Now()
	time.Sleep(15 * time.Millisecond)
	phase(20)
	return brokers, topic, mid
}

func groupsCmd(ctx context.Context, stdin string, args ...string) (string, error) {
	var out bytes.Buffer
	err := group.GroupsCommand{Name: "consumer groups", Stdin: strings.NewReader(stdin)}.Run(ctx, args, &out, &bytes.Buffer{})
	return out.String(), err
}

// TestGroupsTools: list and describe (table and JSON) show a live group;
// reset is refused while it runs, not applied without confirmation, and
// once confirmed moves every partition to the first record after the
// time; a group that does not exist is "not found", for describe and
// reset alike.
func TestGroupsTools(t *testing.T) {
	brokers, topic, mid := toolTopic(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: brokers})
	require.NoError(t, err)
	defer r.Close()
	midOffsets, err := r.OffsetsForTime(ctx, topic, mid)
	require.NoError(t, err)
	bounds, err := r.Bounds(ctx, topic)
	require.NoError(t, err)
	var total int64
	for p, b := range bounds {
		total += b.End
		require.Positive(t, midOffsets[p], "partition %d has records before the time", p)
		require.Less(t, midOffsets[p], b.End, "partition %d has records after the time", p)
	}

	// The stages' kind of member: sarama, cooperative-sticky.
	id := "auditpipe-processor." + topic // unique on a shared external cluster too
	g, err := saramakafka.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: id, Topics: []string{topic}, SessionTimeout: 6 * time.Second, MaxWait: 20 * time.Millisecond})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- g.Run(runCtx, kafka.HandlerFunc(func(context.Context, kafka.Batch) error { return nil }))
	}()
	require.Eventually(t, func() bool {
		off, err := r.CommittedOffsets(ctx, id, topic)
		var sum int64
		for _, o := range off {
			sum += o
		}
		return err == nil && sum == total
	}, 30*time.Second, 50*time.Millisecond)

	brk := strings.Join(brokers, ",")
	out, err := groupsCmd(ctx, "", "list", "--brokers", brk)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^`+id+`\s+Stable\s+1$`, out)
	out, err = groupsCmd(ctx, "", "list", "--kafka-brokers", brk, "--output", "json")
	require.NoError(t, err)
	var list []struct {
		Group, State string
		Members      int
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	require.Contains(t, list, struct {
		Group, State string
		Members      int
	}{id, "Stable", 1})

	out, err = groupsCmd(ctx, "", "describe", "--brokers", brk, "--group", id, "--topic", topic)
	require.NoError(t, err)
	require.Contains(t, out, "members: auditpipe@")
	require.Contains(t, out, "lag")
	out, err = groupsCmd(ctx, "", "describe", "--brokers", brk, "--group", id, "--topic", topic, "--output", "json")
	require.NoError(t, err)
	var desc group.GroupDescription
	require.NoError(t, json.Unmarshal([]byte(out), &desc), out)
	require.Equal(t, id, desc.Group)
	require.Equal(t, "Stable", desc.State)
	require.Len(t, desc.Members, 1)
	require.Len(t, desc.Partitions, len(bounds))
	require.Zero(t, desc.Lag)
	for _, p := range desc.Partitions {
		require.NotNil(t, p.Committed)
		require.Equal(t, bounds[p.Partition].End, *p.Committed)
		require.Equal(t, bounds[p.Partition].End, p.LogEnd)
	}

	reset := []string{"reset", "--brokers", brk, "--group", id, "--topic", topic, "--to-time", mid.Format(time.RFC3339Nano)}
	_, err = groupsCmd(ctx, "", append(reset, "--yes")...)
	require.ErrorIs(t, err, kafka.ErrGroupActive)

	stop()
	require.NoError(t, <-done)
	require.NoError(t, g.Close())
	require.Eventually(t, func() bool {
		info, err := r.DescribeGroup(ctx, id)
		return err == nil && len(info.Members) == 0
	}, 20*time.Second, 50*time.Millisecond)

	out, err = groupsCmd(ctx, "no\n", reset...)
	require.ErrorContains(t, err, "not confirmed")
	require.Contains(t, out, "new", "the planned offsets are shown before asking")
	off, err := r.CommittedOffsets(ctx, id, topic)
	require.NoError(t, err)
	for p, b := range bounds {
		require.Equal(t, b.End, off[p], "unconfirmed reset changed partition %d", p)
	}

	out, err = groupsCmd(ctx, "yes\n", reset...)
	require.NoError(t, err)
	require.Contains(t, out, "After:")
	off, err = r.CommittedOffsets(ctx, id, topic)
	require.NoError(t, err)
	require.Equal(t, midOffsets, off)

	// The group without members is still there, with its lag.
	out, err = groupsCmd(ctx, "", "describe", "--brokers", brk, "--group", id, "--topic", topic, "--output", "json")
	require.NoError(t, err)
	desc = group.GroupDescription{}
	require.NoError(t, json.Unmarshal([]byte(out), &desc), out)
	require.Empty(t, desc.Members)
	require.Equal(t, total-sum(midOffsets), desc.Lag)

	// A group that does not exist.
	missing := id + ".typo"
	_, err = groupsCmd(ctx, "", "describe", "--brokers", brk, "--group", missing, "--topic", topic)
	require.ErrorIs(t, err, group.ErrGroupNotFound)
	require.ErrorContains(t, err, "consumer group "+missing+" not found")
	_, err = groupsCmd(ctx, "", "reset", "--brokers", brk, "--group", missing, "--topic", topic, "--to-time", "1h", "--yes")
	require.ErrorIs(t, err, group.ErrGroupNotFound)
	off, err = r.CommittedOffsets(ctx, missing, topic)
	require.NoError(t, err)
	require.Empty(t, off, "reset created the group")

	// Usage errors and help.
	_, err = groupsCmd(ctx, "", "reset", "--group", id, "--topic", topic)
	require.ErrorContains(t, err, "--to-time is required")
	_, err = groupsCmd(ctx, "", "frob")
	require.ErrorContains(t, err, "list, describe or reset")
	for _, args := range [][]string{{"--help"}, {"help"}, {"describe", "--help"}} {
		out, err = groupsCmd(ctx, "", args...)
		require.NoError(t, err, args)
		require.Contains(t, out, "consumer groups list", "help on stdout for %v", args)
	}
}

func sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}
