package saramakafka

import (
	"context"
	"strconv"
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
