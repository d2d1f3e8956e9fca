package cli

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest/testpki"
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

// TestValidateKafka: every unusable file or setting of the kafka: block is
// reported with its key and file.
func TestValidateKafka(t *testing.T) {
	pki, err := testpki.Write(filepath.Join(t.TempDir(), "pki"), []string{"127.0.0.1"})
	require.NoError(t, err)
	password := writeFile(t, "password", "secret\n")
	good := kafka.Connection{Brokers: []string{"k:9093"},
		TLS:  kafka.TLS{Enabled: true, CAFile: pki.Path(testpki.CACert), CertFile: pki.Path(testpki.ClientCert), KeyFile: pki.Path(testpki.ClientKey)},
		SASL: kafka.SASL{Mechanism: kafka.SASLScramSHA256, Username: "u", PasswordFile: password}}
	require.NoError(t, ValidateKafka(good))

	missing := filepath.Join(t.TempDir(), "missing")
	notPEM := writeFile(t, "not.pem", "hello\n")
	empty := writeFile(t, "empty", "")
	for name, tc := range map[string]struct {
		change func(*kafka.Connection)
		want   []string
	}{
		"no brokers":       {func(c *kafka.Connection) { c.Brokers = nil }, []string{"kafka.brokers"}},
		"ca missing":       {func(c *kafka.Connection) { c.TLS.CAFile = missing }, []string{"kafka.tls.caFile", missing}},
		"ca not PEM":       {func(c *kafka.Connection) { c.TLS.CAFile = notPEM }, []string{"kafka.tls", notPEM}},
		"cert missing":     {func(c *kafka.Connection) { c.TLS.CertFile = missing }, []string{"kafka.tls.certFile", missing}},
		"key missing":      {func(c *kafka.Connection) { c.TLS.KeyFile = missing }, []string{"kafka.tls.keyFile", missing}},
		"key not a key":    {func(c *kafka.Connection) { c.TLS.KeyFile = notPEM }, []string{"kafka.tls", notPEM}},
		"cert without key": {func(c *kafka.Connection) { c.TLS.KeyFile = "" }, []string{"kafka.tls", "keyFile"}},
		"files, no tls":    {func(c *kafka.Connection) { c.TLS.Enabled = false }, []string{"kafka.tls", "enabled"}},
		"password missing": {func(c *kafka.Connection) { c.SASL.PasswordFile = missing }, []string{"kafka.sasl.passwordFile", missing}},
		"password empty":   {func(c *kafka.Connection) { c.SASL.PasswordFile = empty }, []string{"kafka.sasl", empty}},
		"bad mechanism":    {func(c *kafka.Connection) { c.SASL.Mechanism = "SCRAM-SHA-1" }, []string{"kafka.sasl", "SCRAM-SHA-1"}},
		"bad mechanism and missing file": {func(c *kafka.Connection) { c.SASL.Mechanism = "GSSAPI"; c.TLS.CAFile = missing },
			[]string{"kafka.sasl.mechanism", "GSSAPI", "kafka.tls.caFile", missing}},
		"no username": {func(c *kafka.Connection) { c.SASL.Username = "" }, []string{"kafka.sasl", "username"}},
	} {
		t.Run(name, func(t *testing.T) {
			c := good
			tc.change(&c)
			err := ValidateKafka(c)
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
