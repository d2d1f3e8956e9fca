package kafkago_test

import (
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

func TestConformance(t *testing.T) {
	kafkatest.RunConformance(t, factory())
}
