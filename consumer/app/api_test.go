package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// TestConsumerServesSearchAPI runs the consumer with the local sink on the
// in-process broker and queries what it stored through its search API,
// with the CLI an operator uses: the token is required, the server and the
// token can come from the environment, and the web console is served.
func TestConsumerServesSearchAPI(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	dir := t.TempDir()
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = brokers
	cfg.Topic = "audit.events." + suffix
	cfg.Group = "consumer-" + suffix
	cfg.Local.Path = filepath.Join(dir, "store")
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.TokenFile = filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(cfg.API.TokenFile, []byte("s3cret\n"), 0o600))

	admin, err := saramakafka.NewAdmin(brokers, "test-admin")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: cfg.Topic, Partitions: 2, ReplicationFactor: 1}))

	a, err := app.New(cfg, app.Deps{
		NewGroup: func(c kafka.GroupConfig) (kafka.GroupConsumer, error) {
			c.MaxWait = 20 * time.Millisecond
			return saramakafka.NewGroup(c)
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	api, err := a.StartAPI()
	require.NoError(t, err)
	require.NotNil(t, api)
	require.True(t, strings.HasPrefix(api.URL, "http://127.0.0.1:"), api.URL)
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	defer func() {
		stop()
		<-done
		require.NoError(t, api.Shutdown(context.Background()))
		require.NoError(t, a.Close())
	}()

	p, err := saramakafka.NewProducer(kafka.ProducerConfig{Brokers: brokers, ClientID: "test-producer"})
	require.NoError(t, err)
	defer p.Close()
	const n = 40
	var recs []kafka.Record
	for i := range n {
		cluster := []string{"c1", "c2"}[i%2]
		recs = append(recs, kafka.Record{Topic: cfg.Topic, Key: []byte(cluster), Value: eventgen.Event(cluster, fmt.Sprintf("id-%04d", i), 600, time.Now())})
	}
	require.NoError(t, p.Produce(ctx, recs...))

	events := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := search.RunEventsCommand(ctx, args, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	require.Eventually(t, func() bool {
		_, total, err := events("--server", api.URL, "--token", "s3cret", "--limit", "1")
		return err == nil && total == fmt.Sprintf("1 of %d matching events\n", n)
	}, 30*time.Second, 50*time.Millisecond, "the consumer's API answers for what its local sink stored")

	_, _, err = events("--server", api.URL)
	require.ErrorContains(t, err, "401")
	t.Setenv(search.ServerEnv, api.URL)
	t.Setenv(search.TokenEnv, "s3cret")
	out, total, err := events("--cluster", "c2", "--output", "json")
	require.NoError(t, err)
	require.Empty(t, total, "--output json prints no count")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), n/2)

	var sout bytes.Buffer
	require.NoError(t, search.RunSearchCommand(ctx, []string{"--output", "json", "* | SELECT \"auditpipe.cluster\" AS c, count(*) AS n GROUP BY c ORDER BY c"}, &sout, &bytes.Buffer{}))
	require.Equal(t, fmt.Sprintf("{\"c\":\"c1\",\"n\":%d}\n{\"c\":\"c2\",\"n\":%d}\n", n/2, n/2), sout.String())

	resp, err := http.Get(api.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the web console")
	req, err := http.NewRequest(http.MethodGet, api.URL+search.ClustersPath, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the clusters API")
}

// TestConsumerAPIOverTLS serves the API beyond loopback over TLS with the
// configured certificate.
func TestConsumerAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = []string{"unused:9092"}
	cfg.Local.Path = filepath.Join(dir, "store")
	cfg.API = app.APIConfig{Listen: "0.0.0.0:0", Token: "s3cret", TLS: app.APITLSConfig{CertFile: certFile, KeyFile: keyFile}}
	a, err := app.New(cfg, app.Deps{})
	require.NoError(t, err)
	defer a.Close()
	api, err := a.StartAPI()
	require.NoError(t, err)
	defer api.Shutdown(context.Background())
	_, port, err := net.SplitHostPort(strings.TrimPrefix(api.URL, "https://"))
	require.NoError(t, err)

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequest(http.MethodGet, "https://127.0.0.1:"+port+search.EventsPath, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Plain HTTP beyond loopback is refused at start.
	cfg.API.TLS = app.APITLSConfig{}
	_, err = app.New(cfg, app.Deps{})
	require.ErrorContains(t, err, "api.tls")
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and returns
// its files and a pool trusting it.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "consumer-api"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestAPIReloadsTokenAndCertificate: Reload (SIGHUP) makes a rotated token
// file and certificate take effect; a broken token file keeps the previous
// token.
func TestAPIReloadsTokenAndCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("old\n"), 0o600))
	cfg := app.DefaultConfig()
	cfg.Kafka.Brokers = []string{"unused:9092"}
	cfg.Local.Path = filepath.Join(dir, "store")
	cfg.API = app.APIConfig{Listen: "127.0.0.1:0", TokenFile: tokenFile, TLS: app.APITLSConfig{CertFile: certFile, KeyFile: keyFile}}
	a, err := app.New(cfg, app.Deps{})
	require.NoError(t, err)
	defer a.Close()
	api, err := a.StartAPI()
	require.NoError(t, err)
	defer api.Shutdown(context.Background())

	status := func(token string, roots *x509.CertPool) int {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		req, err := http.NewRequest(http.MethodGet, api.URL+search.EventsPath, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return -1 // TLS refused
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, status("old", pool))

	require.NoError(t, os.WriteFile(tokenFile, []byte("new\n"), 0o600))
	newCert, newKey, newPool := selfSigned(t, t.TempDir())
	require.NoError(t, os.Rename(newCert, certFile))
	require.NoError(t, os.Rename(newKey, keyFile))
	require.Equal(t, http.StatusOK, status("old", pool), "nothing changes before the reload")
	require.NoError(t, api.Reload())
	require.Equal(t, http.StatusUnauthorized, status("old", newPool))
	require.Equal(t, http.StatusOK, status("new", newPool))
	require.Equal(t, -1, status("new", pool), "the old certificate is no longer served")

	require.NoError(t, os.WriteFile(tokenFile, nil, 0o600))
	require.ErrorContains(t, api.Reload(), "api.tokenFile")
	require.Equal(t, http.StatusOK, status("new", newPool), "a failed reload keeps the previous token")
}
