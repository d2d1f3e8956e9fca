package kafkago_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

func TestSecurity(t *testing.T) {
	kafkatest.RunSecurity(t, kafkatest.SecurityFactory{
		Name:        "kafka-go",
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { return kafkago.NewProducer(c) },
		NewGroup:    func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return kafkago.NewGroup(c) },
		NewAdmin:    func(c kafka.AdminConfig) (kafka.Admin, error) { return kafkago.NewAdminWithConfig(c) },
	})
}

// TestReaderSecure reads partitions, bounds and group offsets over
// SASL_SSL and mutual TLS: the reader gets TLS and SASL like every other
// client, and reports a wrong password like them.
func TestReaderSecure(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	for _, conn := range []kafka.Connection{c.SASL(kafka.SASLScramSHA512), c.MutualTLS()} {
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		admin, err := kafkago.NewAdminWithConfig(conn.AdminConfig())
		require.NoError(t, err)
		topic := "sec-reader-" + time.Now().Format("150405.000000000")
		require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}))
		p, err := kafkago.NewProducer(conn.ProducerConfig())
		require.NoError(t, err)
		require.NoError(t, p.Produce(ctx, kafka.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}))
		r, err := kafkago.NewReader(conn.ReaderConfig())
		require.NoError(t, err)
		parts, err := r.Partitions(ctx, topic)
		require.NoError(t, err)
		require.Equal(t, []int32{0, 1}, parts)
		bounds, err := r.Bounds(ctx, topic)
		require.NoError(t, err)
		var n int64
		for _, b := range bounds {
			n += b.Len()
		}
		require.Equal(t, int64(1), n, "records in %s over %v", topic, conn.Brokers)
		_, _, _ = r.Close(), p.Close(), admin.Close()
		cancel()
	}

	conn := c.SASL(kafka.SASLScramSHA256)
	conn.SASL.PasswordFile = ""
	conn.SASL.Password = "not-the-password"
	r, err := kafkago.NewReader(conn.ReaderConfig())
	require.NoError(t, err)
	defer func() { _ = r.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	_, err = r.Partitions(ctx, "any")
	require.Error(t, err)
	if c.ReportsAuthFailures {
		require.ErrorIs(t, err, kafka.ErrAuthentication)
		require.ErrorContains(t, err, c.SASLSSL[0])
	}
}
