package fleet

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// The variables test-kafka.sh's export_security_env sets for a cluster
// started with SASL_SSL listeners.
const (
	saslSSLBrokersEnv = "AUDITPIPE_TEST_KAFKA_SASL_SSL"
	caEnv             = "AUDITPIPE_TEST_KAFKA_CA"
	saslUserEnv       = "AUDITPIPE_TEST_KAFKA_SASL_USER"
	saslPasswordEnv   = "AUDITPIPE_TEST_KAFKA_SASL_PASSWORD_FILE"
)

// connectionFromEnv is the cluster's SASL_SSL listener (SCRAM-SHA-512,
// server verified against the test CA) when test-kafka.sh started one,
// else its PLAINTEXT listener.
func connectionFromEnv(t *testing.T) kafka.Connection {
	t.Helper()
	brokers := os.Getenv(saslSSLBrokersEnv)
	if brokers == "" {
		t.Logf("Kafka: PLAINTEXT (%s is not set)", saslSSLBrokersEnv)
		return kafka.Connection{Brokers: strings.Split(os.Getenv(kafkatest.BrokersEnv), ",")}
	}
	c := kafka.Connection{
		Brokers: strings.Split(brokers, ","),
		TLS:     kafka.TLS{Enabled: true, CAFile: os.Getenv(caEnv)},
		SASL: kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: os.Getenv(saslUserEnv),
			PasswordFile: os.Getenv(saslPasswordEnv)},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Kafka connection from %s, %s, %s, %s: %v", saslSSLBrokersEnv, caEnv, saslUserEnv, saslPasswordEnv, err)
	}
	t.Logf("Kafka: SASL_SSL at %s, %s as %s", brokers, c.SASL.Mechanism, c.SASL.Username)
	return c
}

// security names how the fleet connects, for the summary line.
func security(c kafka.Connection) string {
	if c.TLS.Enabled && c.SASL.Enabled() {
		return "sasl_ssl"
	}
	return "plaintext"
}

// kafkaYAML is the `kafka:` block of a stage's config file (CONTRACT.md),
// indented by indent.
func kafkaYAML(c kafka.Connection, clientID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  brokers: [%s]\n  clientID: %s\n", strings.Join(c.Brokers, ", "), clientID)
	if c.TLS.Enabled {
		fmt.Fprintf(&b, "  tls:\n    enabled: true\n    caFile: %s\n", c.TLS.CAFile)
	}
	if c.SASL.Enabled() {
		fmt.Fprintf(&b, "  sasl:\n    mechanism: %s\n    username: %s\n    passwordFile: %s\n", c.SASL.Mechanism, c.SASL.Username, c.SASL.PasswordFile)
	}
	return b.String()
}
