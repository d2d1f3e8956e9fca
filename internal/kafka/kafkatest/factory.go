package kafkatest

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// Factory builds one adapter's implementations of the kafka port for the
// conformance suite (RunConformance). Constructors fail the test on error
// and register Close with tb.Cleanup.
type Factory struct {
	// Name names the adapter in test output.
	Name        string
	NewProducer func(tb testing.TB, cfg kafka.ProducerConfig) kafka.Producer
	NewGroup    func(tb testing.TB, cfg kafka.GroupConfig) kafka.GroupConsumer
	NewAdmin    func(tb testing.TB, brokers []string) kafka.Admin
}
