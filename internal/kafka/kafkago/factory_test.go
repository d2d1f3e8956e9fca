package kafkago_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// factory builds this adapter for the conformance suite and for the tests
// of this package.
func factory() kafkatest.Factory {
	return kafkatest.Factory{
		Name: "kafka-go",
		NewProducer: func(tb testing.TB, cfg kafka.ProducerConfig) kafka.Producer {
			tb.Helper()
			p, err := kafkago.NewProducer(cfg)
			require.NoError(tb, err)
			tb.Cleanup(func() { _ = p.Close() })
			return p
		},
		NewGroup: func(tb testing.TB, cfg kafka.GroupConfig) kafka.GroupConsumer {
			tb.Helper()
			g, err := kafkago.NewGroup(cfg)
			require.NoError(tb, err)
			tb.Cleanup(func() { _ = g.Close() })
			return g
		},
		NewAdmin: func(tb testing.TB, brokers []string) kafka.Admin {
			tb.Helper()
			a, err := kafkago.NewAdmin(brokers, "auditpipe-test")
			require.NoError(tb, err)
			tb.Cleanup(func() { _ = a.Close() })
			return a
		},
	}
}
