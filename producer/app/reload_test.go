package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/internal/testkit"
)

// TestReloadSwapsTokensAndCertificate: after the tokens file and the
// server certificate are replaced, Reload makes the new token work and the
// old one fail, and new connections get the new certificate; a broken
// tokens file is refused and the current tokens stay.
func TestReloadSwapsTokensAndCertificate(t *testing.T) {
	dir := t.TempDir()
	pki, err := auth.GenerateDevPKI(filepath.Join(dir, "pki"), []string{"127.0.0.1"}, nil)
	require.NoError(t, err)
	tokens := filepath.Join(dir, "tokens.csv")
	require.NoError(t, os.WriteFile(tokens, []byte(auth.Digest("old-token-of-c1-xxxxxxxx")+",c1\n"), 0o600))

	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Webhook.TLS = auth.TLSFiles{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile}
	cfg.Webhook.TokensFile = tokens
	a, err := New(cfg, Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return nopProducer{}, nil }})
	require.NoError(t, err)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(func() { _ = a.Close() })

	serverCert := func() []byte {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(pki.CAFile)
		require.NoError(t, err)
		pool.AppendCertsFromPEM(ca)
		conn, err := tls.Dial("tcp", a.WebhookAddr(), &tls.Config{RootCAs: x509.NewCertPool(), InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	status := func(token string) int {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} //nolint:gosec // the test checks authentication, not the server
		req, err := http.NewRequest(http.MethodPost, a.WebhookURL()+"/v1/audit/c1", bytes.NewReader([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}`)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.NotEqual(t, http.StatusUnauthorized, status("old-token-of-c1-xxxxxxxx"))
	require.Equal(t, http.StatusUnauthorized, status("new-token-of-c1-yyyyyyyy"))
	before := serverCert()

	// Rotate: a new tokens file and a new server certificate.
	require.NoError(t, os.WriteFile(tokens, []byte(auth.Digest("new-token-of-c1-yyyyyyyy")+",c1\n"), 0o600))
	pki2, err := auth.GenerateDevPKI(filepath.Join(dir, "pki2"), []string{"127.0.0.1"}, nil)
	require.NoError(t, err)
	for from, to := range map[string]string{pki2.ServerCertFile: pki.ServerCertFile, pki2.ServerKeyFile: pki.ServerKeyFile} {
		b, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, b, 0o600))
	}
	require.NoError(t, a.Reload())
	require.Equal(t, http.StatusUnauthorized, status("old-token-of-c1-xxxxxxxx"))
	require.NotEqual(t, http.StatusUnauthorized, status("new-token-of-c1-yyyyyyyy"))
	require.NotEqual(t, before, serverCert(), "new connections get the renewed certificate")

	// A broken tokens file is refused; the tokens in force stay.
	require.NoError(t, os.WriteFile(tokens, []byte("not a tokens line\n"), 0o600))
	require.Error(t, a.Reload())
	require.NotEqual(t, http.StatusUnauthorized, status("new-token-of-c1-yyyyyyyy"))
}

// TestReadyOnceKafkaAnswered: /readyz is false while Kafka was never
// reached, true once it answered.
func TestReadyOnceKafkaAnswered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	brokers := kafkatest.Brokers(t)
	topics := testkit.Topics(t, brokers)
	for _, tc := range []struct {
		brokers []string
		ready   bool
	}{{[]string{dead}, false}, {brokers, true}} {
		cfg := DefaultConfig()
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
		cfg.Kafka.Brokers = tc.brokers
		cfg.Topics = topics
		health := telemetry.NewHealth()
		a, err := New(cfg, Deps{Health: health, NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return nopProducer{}, nil }})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		failed := health.Ready(ctx)
		cancel()
		if tc.ready {
			require.NotContains(t, failed, "producer-kafka", "%v", tc.brokers)
		} else {
			require.Contains(t, failed, "producer-kafka", "%v", tc.brokers)
		}
		require.NoError(t, a.Close())
	}
}
