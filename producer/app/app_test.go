package app

import (
	"net/http/httptest"

	"bufio"
	"context"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/internal/testkit"
	"github.com/auditpipe/auditpipe/producer/webhook"
	"github.com/auditpipe/auditpipe/schemas"
)

func TestLoadExample(t *testing.T) {
	cfg, err := Load("testdata/producer.yaml")
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:8443", cfg.Webhook.Listen)
	require.Equal(t, Duration(15*time.Second), cfg.Webhook.PublishTimeout)
	require.Equal(t, int64(64<<20), cfg.Webhook.MaxBodyBytes, "absent keys keep their defaults")
	require.Equal(t, "prod-eu-1", cfg.Tail.Cluster)
	require.Equal(t, "0.0.0.0:9463", cfg.Metrics.Listen)
}

func TestLoadNamesUnknownKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("webhook:\n  tls:\n    certfile: x\n"), 0o600))
	_, err := Load(path)
	require.ErrorContains(t, err, `unknown field "webhook.tls.certfile"`)
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		mutate func(*Config)
		err    string
	}{
		"plain http on the network": {func(c *Config) { c.Webhook.Listen = ":8090" }, "refusing to accept audit events over plain HTTP"},
		"tls without credentials": {func(c *Config) {
			c.Webhook.Listen = ":8443"
			c.Webhook.TLS = auth.TLSFiles{CertFile: "c", KeyFile: "k"}
		}, "no credentials are configured"},
		"allowed insecure": {func(c *Config) { c.Webhook.Listen = ":8090"; c.Webhook.AllowInsecure = true }, ""},
		"tls on the network": {func(c *Config) {
			c.Webhook.Listen = ":8443"
			c.Webhook.TLS = auth.TLSFiles{CertFile: "c", KeyFile: "k"}
			c.Webhook.TokensFile = "t"
		}, ""},
		"key without cert":        {func(c *Config) { c.Webhook.TLS.KeyFile = "k" }, "certFile and keyFile must be set together"},
		"event above kafka limit": {func(c *Config) { c.Webhook.MaxEventBytes = 2 << 20 }, "must be below kafka.maxMessageBytes"},
		"kafka timeout too long":  {func(c *Config) { c.Spool.KafkaTimeout = Duration(time.Minute) }, "spool.kafkaTimeout"},
		"budget below one body":   {func(c *Config) { c.Webhook.MaxInflightBytes = c.Webhook.MaxBodyBytes }, "webhook.maxInflightBytes"},
		"no body read deadline":   {func(c *Config) { c.Webhook.BodyReadTimeout = 0 }, "webhook.bodyReadTimeout"},
		"tail without cluster":    {func(c *Config) { c.Tail.Path = "/var/log/audit.log" }, "tail.cluster"},
		"nothing to do":           {func(c *Config) { c.Webhook.Listen = "" }, "nothing to do"},
		"no brokers":              {func(c *Config) { c.Kafka.Brokers = nil }, "kafka.brokers"},
	}
	for name, c := range cases {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		err := cfg.Validate()
		if c.err == "" {
			require.NoError(t, err, name)
		} else {
			require.ErrorContains(t, err, c.err, name)
		}
	}
}

// TestAppOverTLS runs the wired producer in-process with TLS, client CA and
// a tokens file; kube-apiserver's webhook backend posts with a token; the
// events arrive; /readyz and /metrics answer; Shutdown is safe twice.
func TestAppOverTLS(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topics := testkit.Topics(t, brokers)
	dir := t.TempDir()
	pki, err := auth.GenerateDevPKI(filepath.Join(dir, "pki"), []string{"127.0.0.1"}, []string{"c1"})
	require.NoError(t, err)
	const token = "a-token-of-cluster-c1-for-tests"
	tokens := filepath.Join(dir, "tokens.csv")
	require.NoError(t, os.WriteFile(tokens, []byte(auth.Digest(token)+",c1\n"), 0o600))

	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Kafka.Brokers = brokers
	cfg.Topics = topics
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Webhook.TLS = auth.TLSFiles{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, ClientCAFile: pki.CAFile}
	cfg.Webhook.TokensFile = tokens
	a, err := New(cfg, Deps{})
	require.NoError(t, err)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	require.Regexp(t, `^https://127\.0\.0\.1:\d+$`, a.WebhookURL())

	kc, err := webhook.WriteKubeconfig(webhook.KubeconfigOptions{Server: a.WebhookURL(), Cluster: "c1", CAFile: pki.CAFile, Token: token})
	require.NoError(t, err)
	kcPath := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(kcPath, kc, 0o600))
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:40]
	backend := audittest.WebhookBackendFromKubeconfig(t, kcPath, audittest.ModeBlocking)
	require.True(t, backend.ProcessEvents(evs...))
	backend.Shutdown()
	got := testkit.Collect(t, brokers, topics.Raw, 30*time.Second, testkit.AtLeast(len(evs)))
	require.Len(t, got, len(evs))
	for _, r := range got {
		require.Equal(t, "c1", string(r.HeaderValue(schemas.HeaderCluster)))
	}

	admin := httptest.NewServer(telemetry.Mux(a.Registry(), a.Health()))
	defer admin.Close()
	for path, want := range map[string]string{"/readyz": `"ready":true`, "/metrics": "auditpipe_producer_spool_bytes 0"} {
		resp, err := http.Get(admin.URL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode, path)
		require.Contains(t, string(body), want, path)
	}
	problems, err := testutil.GatherAndLint(a.Registry())
	require.NoError(t, err)
	for _, p := range problems {
		require.NotRegexp(t, "^auditpipe_", p.Metric, "metric lint: %s", p.Text)
	}
	mfs, err := a.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "auditpipe_") {
			require.Regexp(t, `^auditpipe_producer_[a-z_]+$`, mf.GetName())
		}
	}
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, a.Shutdown(context.Background()))
}

func TestShutdownWithoutStart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	a, err := New(cfg, Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return nopProducer{}, nil }})
	require.NoError(t, err)
	require.NoError(t, a.Shutdown(context.Background()))
	require.NoError(t, a.Shutdown(context.Background()))
}

type nopProducer struct{}

func (nopProducer) Produce(context.Context, ...kafka.Record) error { return nil }
func (nopProducer) Close() error                                   { return nil }

// TestAppCutsSlowClients checks the server's deadlines as the app wires
// them: a client that never finishes its headers is disconnected after
// webhook.readHeaderTimeout, one that trickles its body gets 408 after
// webhook.bodyReadTimeout, long before it would have finished.
func TestAppCutsSlowClients(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Webhook.ReadHeaderTimeout = Duration(300 * time.Millisecond)
	cfg.Webhook.BodyReadTimeout = Duration(500 * time.Millisecond)
	a, err := New(cfg, Deps{NewProducer: func(kafka.ProducerConfig) (kafka.Producer, error) { return nopProducer{}, nil }})
	require.NoError(t, err)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })

	// Headers that never end.
	conn, err := net.Dial("tcp", a.WebhookAddr())
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /v1/audit/c1 HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	start := time.Now()
	_, err = io.ReadAll(conn)
	require.NoError(t, err, "the server closed the connection (not our 10s read deadline)")
	require.Less(t, time.Since(start), 5*time.Second)

	// A body that trickles: 1000 bytes announced, one a 100ms.
	body, err := net.Dial("tcp", a.WebhookAddr())
	require.NoError(t, err)
	defer body.Close()
	_, err = io.WriteString(body, "POST /v1/audit/c1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
	require.NoError(t, err)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := body.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	require.NoError(t, body.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(body), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
}
