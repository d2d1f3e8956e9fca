package saramakafka

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

func TestSecurity(t *testing.T) {
	kafkatest.RunSecurity(t, kafkatest.SecurityFactory{
		Name:        "sarama",
		NewProducer: func(c kafka.ProducerConfig) (kafka.Producer, error) { return NewProducer(c) },
		NewGroup:    func(c kafka.GroupConfig) (kafka.GroupConsumer, error) { return NewGroup(c) },
		NewAdmin:    func(c kafka.AdminConfig) (kafka.Admin, error) { return NewAdminWithConfig(c) },
	})
}

// TestTransactorSecure commits a transaction over SASL_SSL: the
// transactor's producers get TLS and SASL like every other client.
func TestTransactorSecure(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA256)
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	admin, err := NewAdminWithConfig(conn.AdminConfig())
	require.NoError(t, err)
	defer func() { _ = admin.Close() }()
	in, out := "sec-txn-in-"+t.Name(), "sec-txn-out-"+t.Name()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: in, Partitions: 1, ReplicationFactor: 1},
		kafka.TopicSpec{Name: out, Partitions: 1, ReplicationFactor: 1}))
	group := "sec-txn-group-" + time.Now().Format("150405.000000")
	tx, err := NewTransactor(conn.TransactorConfig(group, group))
	require.NoError(t, err)
	defer func() { _ = tx.Close() }()
	require.NoError(t, tx.Commit(ctx, kafka.InputOffset{Topic: in, Partition: 0, Next: 7}, kafka.Record{Topic: out, Value: []byte("v")}))
	waitOffsets(t, admin, group, in, map[int32]int64{0: 7})
}
