package kafka_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/config"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest/testpki"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestSASLPasswordFile(t *testing.T) {
	s := kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: "u", PasswordFile: writeFile(t, "pw", "s3cret\n")}
	require.NoError(t, s.Validate())
	r, err := s.Resolved()
	require.NoError(t, err)
	require.Equal(t, "s3cret", r.Password, "one trailing newline is trimmed")

	r, err = kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u", PasswordFile: writeFile(t, "pw", "a b \r\n")}.Resolved()
	require.NoError(t, err)
	require.Equal(t, "a b ", r.Password, "CRLF is trimmed, other spaces are the password's")

	missing := filepath.Join(t.TempDir(), "missing")
	err = kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u", PasswordFile: missing}.Validate()
	require.ErrorContains(t, err, missing)
	require.ErrorIs(t, err, os.ErrNotExist)

	empty := writeFile(t, "empty", "\n")
	require.ErrorContains(t, kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u", PasswordFile: empty}.Validate(), "password file "+empty+" is empty")
	require.ErrorContains(t, kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u", Password: "p", PasswordFile: empty}.Validate(), "not both")
	require.ErrorContains(t, kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u"}.Validate(), "needs a username and a password")
	require.Equal(t, "PLAIN as u", kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u", Password: "p"}.String())
}

func TestTLSConfig(t *testing.T) {
	pki, err := testpki.Write(t.TempDir(), []string{"127.0.0.1"})
	require.NoError(t, err)

	c, err := kafka.TLS{}.Config()
	require.NoError(t, err)
	require.Nil(t, c, "disabled")
	_, err = kafka.TLS{CAFile: pki.Path(testpki.CACert)}.Config()
	require.ErrorContains(t, err, "tls.enabled is false")

	c, err = kafka.TLS{Enabled: true, CAFile: pki.Path(testpki.CACert), CertFile: pki.Path(testpki.ClientCert),
		KeyFile: pki.Path(testpki.ClientKey), ServerName: "kafka-0"}.Config()
	require.NoError(t, err)
	require.NotNil(t, c.RootCAs)
	require.Len(t, c.Certificates, 1)
	require.Equal(t, "kafka-0", c.ServerName)

	missing := filepath.Join(t.TempDir(), "ca.crt")
	_, err = kafka.TLS{Enabled: true, CAFile: missing}.Config()
	require.ErrorContains(t, err, missing)
	notPEM := writeFile(t, "ca.crt", "not a certificate")
	_, err = kafka.TLS{Enabled: true, CAFile: notPEM}.Config()
	require.ErrorContains(t, err, "CA file "+notPEM+": no PEM certificate")
	_, err = kafka.TLS{Enabled: true, CertFile: pki.Path(testpki.ClientCert), KeyFile: pki.Path(testpki.ServerKey)}.Config()
	require.ErrorContains(t, err, pki.Path(testpki.ClientCert))
	_, err = kafka.TLS{Enabled: true, CertFile: pki.Path(testpki.ClientCert)}.Config()
	require.ErrorContains(t, err, "certFile and keyFile go together")
}

// TestConnectionYAMLAndFlags loads the contract's `kafka:` block strictly
// and overrides it with the --kafka-* flags.
func TestConnectionYAMLAndFlags(t *testing.T) {
	pki, err := testpki.Write(t.TempDir(), []string{"127.0.0.1"})
	require.NoError(t, err)
	pw := writeFile(t, "password", "pw\n")
	var cfg struct {
		Kafka kafka.Connection `json:"kafka"`
	}
	yaml := `kafka:
  brokers: [kafka-0:9093, kafka-1:9093]
  clientID: auditpipe-processor
  tls:
    enabled: true
    caFile: ` + pki.Path(testpki.CACert) + `
    certFile: ` + pki.Path(testpki.ClientCert) + `
    keyFile: ` + pki.Path(testpki.ClientKey) + `
    serverName: ""
    insecureSkipVerify: false
  sasl:
    mechanism: SCRAM-SHA-512
    username: auditpipe-processor
    passwordFile: ` + pw + `
`
	require.NoError(t, config.Load([]byte(yaml), &cfg))
	require.NoError(t, cfg.Kafka.Validate())
	require.Equal(t, []string{"kafka-0:9093", "kafka-1:9093"}, cfg.Kafka.Brokers)
	require.ErrorContains(t, config.Load([]byte("kafka:\n  tls:\n    cafile: x\n"), &cfg), `"kafka.tls.cafile"`)

	conn := cfg.Kafka
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	conn.RegisterFlags(fs)
	other := writeFile(t, "other", "pw2")
	require.NoError(t, fs.Parse([]string{"--brokers", "a:1, b:2", "--kafka-client-id", "x", "--kafka-sasl-mechanism", "PLAIN",
		"--kafka-sasl-username", "bob", "--kafka-sasl-password-file", other, "--kafka-tls-server-name", "kafka.example"}))
	require.Equal(t, []string{"a:1", "b:2"}, conn.Brokers)
	require.Equal(t, "x", conn.ClientID)
	require.Equal(t, kafka.SASL{Mechanism: "PLAIN", Username: "bob", PasswordFile: other}, conn.SASL)
	require.Equal(t, "kafka.example", conn.TLS.ServerName)
	require.Equal(t, pki.Path(testpki.CACert), conn.TLS.CAFile, "flags not given keep the file's values")
	require.NoError(t, conn.Validate())

	// A password from the file is replaced by the flag's password file,
	// not combined with it (which Validate would refuse).
	conn = kafka.Connection{Brokers: []string{"a:1"}, SASL: kafka.SASL{Mechanism: "PLAIN", Username: "u", Password: "inline"}}
	fs = flag.NewFlagSet("test", flag.ContinueOnError)
	conn.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"--kafka-sasl-password-file", other, "--kafka-tls", "--kafka-tls-ca-file", pki.Path(testpki.CACert), "--kafka-brokers", "c:3"}))
	require.Equal(t, kafka.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: other}, conn.SASL)
	require.True(t, conn.TLS.Enabled)
	require.Equal(t, []string{"c:3"}, conn.Brokers)
	require.NoError(t, conn.Validate())

	g := conn.GroupConfig("g", "t1")
	require.Equal(t, conn.TLS, g.TLS)
	require.Equal(t, conn.SASL, g.SASL)
	require.Equal(t, []string{"t1"}, g.Topics)
	require.Equal(t, conn.TLS, conn.TransactorConfig("g", "tx").TLS)
	require.Equal(t, conn.SASL, conn.ReaderConfig().SASL)
	require.Equal(t, conn.Brokers, conn.AdminConfig().Brokers)

	require.ErrorContains(t, kafka.Connection{}.Validate(), "no brokers")
	require.ErrorContains(t, kafka.Connection{Brokers: []string{"a:1"}, SASL: kafka.SASL{Mechanism: "GSSAPI"}}.Validate(), `mechanism "GSSAPI" is not supported`)
}

func TestRefused(t *testing.T) {
	require.False(t, kafka.Refused(nil))
	require.False(t, kafka.Refused(fmt.Errorf("kafka broker a:1: %w: %w", kafka.ErrTLSHandshake, io.EOF)), "EOF in a handshake: a restarting broker")
	require.True(t, kafka.Refused(kafka.AuthFailed(errors.New("[58]"), []string{"a:1"}, kafka.SASL{Mechanism: kafka.SASLPlain, Username: "u"})))
	require.True(t, kafka.Refused(fmt.Errorf("x: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}})))
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
	require.True(t, kafka.Refused(fmt.Errorf("kafka broker a:1: %w: %w", kafka.ErrTLSHandshake, alert)))
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
	require.NoError(t, good.Validate())

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
			err := c.Validate()
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}
