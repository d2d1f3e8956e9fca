package app

import (
	"context"
	"io"
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
		"budget below one body":   {func(c *Config) { c.Webhook.MaxInflightBytes = c.Webhook.MaxBodyBytes - 1 }, "webhook.maxInflightBytes"},
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
	cfg.Admin.Listen = "127.0.0.1:0"
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

	for path, want := range map[string]string{"/readyz": `"ready":true`, "/metrics": "auditpipe_producer_spool_bytes 0"} {
		resp, err := http.Get("http://" + a.AdminAddr() + path)
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
