package cli

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// TestKafkaFlagsOverrideTheFile: the kafka: block of a stage's YAML, TLS
// and SASL included, is overridden key by key by the --kafka-* flags.
func TestKafkaFlagsOverrideTheFile(t *testing.T) {
	path := writeFile(t, "c.yaml", `kafka:
  brokers: [file:9093]
  clientID: file-client
  tls:
    enabled: true
    caFile: /file/ca.crt
    certFile: /file/user.crt
    keyFile: /file/user.key
    serverName: file.example
  sasl:
    mechanism: SCRAM-SHA-512
    username: file-user
    password: file-password
`)
	s := testStage(nil)
	s.Check = nil
	cfg, err := s.Load("run", []string{"--config", path}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, kafka.Connection{Brokers: []string{"file:9093"}, ClientID: "file-client",
		TLS:  kafka.TLS{Enabled: true, CAFile: "/file/ca.crt", CertFile: "/file/user.crt", KeyFile: "/file/user.key", ServerName: "file.example"},
		SASL: kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: "file-user", Password: "file-password"}}, cfg.Kafka)

	cfg, err = s.Load("run", []string{"--config", path, "--kafka-brokers", "flag:9093", "--kafka-client-id", "flag-client",
		"--kafka-tls-ca-file", "/flag/ca.crt", "--kafka-tls-cert-file", "/flag/user.crt", "--kafka-tls-key-file", "/flag/user.key",
		"--kafka-tls-server-name", "flag.example", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "flag-user",
		"--kafka-sasl-password-file", "/flag/password"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, kafka.Connection{Brokers: []string{"flag:9093"}, ClientID: "flag-client",
		TLS:  kafka.TLS{Enabled: true, CAFile: "/flag/ca.crt", CertFile: "/flag/user.crt", KeyFile: "/flag/user.key", ServerName: "flag.example"},
		SASL: kafka.SASL{Mechanism: kafka.SASLPlain, Username: "flag-user", PasswordFile: "/flag/password"}}, cfg.Kafka,
		"the password file flag replaces the file's inline password")

	cfg, err = s.Load("run", []string{"--config", path, "--kafka-tls=false", "--kafka-sasl-mechanism="}, io.Discard)
	require.NoError(t, err)
	require.False(t, cfg.Kafka.TLS.Enabled)
	require.False(t, cfg.Kafka.SASL.Enabled())
}
