package fleet

import (
	"fmt"
	"os"
	"os/exec"
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

// stageConnections is how each stage's processes connect: like the test's
// own clients when the stage's binary takes TLS and SASL settings (it has
// a --kafka-tls flag), else through the cluster's PLAINTEXT listener, said
// in the log and in the summary line.
func stageConnections(t *testing.T, c kafka.Connection, bins map[string]string) map[string]kafka.Connection {
	t.Helper()
	plain := kafka.Connection{Brokers: strings.Split(os.Getenv(kafkatest.BrokersEnv), ",")}
	out := map[string]kafka.Connection{}
	for _, stage := range []string{"producer", "processor", "consumer"} {
		out[stage] = c
		if (c.TLS.Enabled || c.SASL.Enabled()) && !takesKafkaSecurity(t, bins[stage]) {
			t.Logf("%s: PLAINTEXT at %s: this %s binary takes no kafka.tls/kafka.sasl (no --kafka-tls flag)", stage, strings.Join(plain.Brokers, ","), stage)
			out[stage] = plain
		}
	}
	return out
}

// takesKafkaSecurity reports whether a stage binary has the --kafka-tls
// flag of the contract's kafka: block.
func takesKafkaSecurity(t *testing.T, bin string) bool {
	t.Helper()
	// Help exits 0 on stdout, or 2 on stderr in older binaries: either
	// way the flags are listed.
	out, _ := exec.Command(bin, "run", "--help").CombinedOutput()
	return strings.Contains(string(out), "-kafka-tls")
}

// security names how the stages connect, for the summary line.
func security(conns map[string]kafka.Connection) string {
	secure := 0
	for _, c := range conns {
		if c.TLS.Enabled && c.SASL.Enabled() {
			secure++
		}
	}
	switch secure {
	case len(conns):
		return "sasl_ssl"
	case 0:
		return "plaintext"
	default:
		return fmt.Sprintf("sasl_ssl(%d/%d stages)", secure, len(conns))
	}
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
