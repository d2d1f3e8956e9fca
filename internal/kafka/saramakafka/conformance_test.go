package saramakafka

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

func factory() kafkatest.Factory {
	return kafkatest.Factory{
		Name: "sarama",
		NewProducer: func(tb testing.TB, cfg kafka.ProducerConfig) kafka.Producer {
			tb.Helper()
			p, err := NewProducer(cfg)
			if err != nil {
				tb.Fatalf("new producer: %v", err)
			}
			tb.Cleanup(func() { _ = p.Close() })
			return p
		},
		NewGroup: func(tb testing.TB, cfg kafka.GroupConfig) kafka.GroupConsumer {
			tb.Helper()
			g, err := NewGroup(cfg)
			if err != nil {
				tb.Fatalf("new group: %v", err)
			}
			tb.Cleanup(func() { _ = g.Close() })
			return g
		},
		NewAdmin: func(tb testing.TB, brokers []string) kafka.Admin {
			tb.Helper()
			a, err := NewAdmin(brokers, "conformance-admin")
			if err != nil {
				tb.Fatalf("new admin: %v", err)
			}
			tb.Cleanup(func() { _ = a.Close() })
			return a
		},
	}
}

func TestConformance(t *testing.T) {
	kafkatest.RunConformance(t, factory())
}
