package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// TestKafkaCredentialsAndSecurityFlags: the tools authenticate with the
// embedded broker's credentials file, unless --kafka-sasl-* name another
// user (an external cluster); --kafka-tls* reach the reader either way.
func TestKafkaCredentialsAndSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "kafka-credentials.json")
	require.NoError(t, os.WriteFile(creds, []byte(`{"mechanism":"SCRAM-SHA-256","username":"auditpipe","password":"generated"}`), 0o600))
	password := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(password, []byte("external\n"), 0o600))
	ca := filepath.Join(dir, "ca.crt")

	parse := func(args ...string) (kafka.ReaderConfig, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		conn, err := kafkaFlags(fs, args)
		require.NoError(t, err)
		require.NoError(t, fs.Parse(args))
		return conn()
	}
	rc, err := parse("--kafka-credentials", creds)
	require.NoError(t, err)
	require.Equal(t, kafka.SASL{Mechanism: kafka.SASLScramSHA256, Username: "auditpipe", Password: "generated"}, rc.SASL)

	rc, err = parse("--kafka-credentials", creds, "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "ext",
		"--kafka-sasl-password-file", password)
	require.NoError(t, err)
	require.Equal(t, kafka.SASL{Mechanism: kafka.SASLScramSHA512, Username: "ext", PasswordFile: password}, rc.SASL)

	_, err = parse("--kafka-credentials", "", "--kafka-tls-ca-file", ca, "--kafka-tls")
	require.ErrorContains(t, err, "kafka.tls.caFile "+ca, "the CA file is read before connecting")
}
