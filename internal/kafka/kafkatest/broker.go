// Package kafkatest holds test helpers for code that talks to Kafka: an
// in-process broker per test and the conformance suite every adapter of
// package kafka passes.
package kafkatest

import (
	"os"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
)

// BrokersEnv names the environment variable that points the tests at an
// external Kafka cluster (comma-separated bootstrap addresses) instead of
// an in-process broker. `make test-kafka` sets it.
const BrokersEnv = "AUDITPIPE_TEST_KAFKA_BROKERS"

// Brokers returns bootstrap addresses for a test: the external cluster
// named by BrokersEnv, or a fresh in-process broker that is stopped when
// the test ends.
func Brokers(tb testing.TB) []string {
	tb.Helper()
	if v := os.Getenv(BrokersEnv); v != "" {
		return strings.Split(v, ",")
	}
	return StartBroker(tb, embedded.Config{}).Addrs()
}

// StartBroker starts an in-process broker with cfg and stops it when the
// test ends.
func StartBroker(tb testing.TB, cfg embedded.Config) *embedded.Broker {
	tb.Helper()
	b, err := embedded.Start(cfg)
	if err != nil {
		tb.Fatalf("start in-process kafka: %v", err)
	}
	tb.Cleanup(b.Close)
	return b
}
