package auth_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/producer/auth"
	"github.com/auditpipe/auditpipe/producer/webhook"
	"github.com/auditpipe/auditpipe/schemas"
)

const (
	tokenA = "token-for-cluster-a-0123456789"
	tokenB = "token-for-cluster-b-0123456789"
)

type tlsHarness struct {
	url     string
	pki     *auth.DevPKI
	other   *auth.DevPKI // a CA the receiver does not trust
	brokers []string
	topics  schemas.Topics
	reg     *prometheus.Registry
}

// newTLSHarness starts the receiver behind the authenticator on a TLS
// server with the dev PKI, client certificates and a tokens file.
func newTLSHarness(t *testing.T) *tlsHarness {
	t.Helper()
	dir := t.TempDir()
	pki, err := auth.GenerateDevPKI(filepath.Join(dir, "pki"), []string{"127.0.0.1", "localhost"}, []string{"cluster-a", "cluster-b"})
	require.NoError(t, err)
	other, err := auth.GenerateDevPKI(filepath.Join(dir, "other"), []string{"127.0.0.1"}, []string{"cluster-a"})
	require.NoError(t, err)
	tokensFile := filepath.Join(dir, "tokens.csv")
	// One plain token and one stored as its digest.
	require.NoError(t, os.WriteFile(tokensFile, []byte("# token,cluster\n"+tokenA+",cluster-a\n"+auth.Digest(tokenB)+",cluster-b\n"), 0o600))
	tokens, err := auth.LoadTokens(tokensFile, webhook.ValidClusterID)
	require.NoError(t, err)
	tlsCfg, cas, err := auth.TLSFiles{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, ClientCAFile: pki.CAFile}.ServerConfig()
	require.NoError(t, err)

	brokers := kafkatest.Brokers(t)
	n := strings.NewReplacer("/", ".").Replace(t.Name()) + "." + time.Now().Format("150405.000000000")
	topics := schemas.Topics{Raw: "raw." + n, Events: "events." + n, DLQ: "dlq." + n}
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, admin.EnsureTopics(ctx,
		kafka.TopicSpec{Name: topics.Raw, Partitions: 2, ReplicationFactor: 1},
		kafka.TopicSpec{Name: topics.DLQ, Partitions: 1, ReplicationFactor: 1}))
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	cfg := webhook.DefaultConfig()
	cfg.Topics = topics
	reg := prometheus.NewRegistry()
	metrics, err := webhook.NewMetrics(reg)
	require.NoError(t, err)
	rc, err := webhook.New(cfg, prod, metrics, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	authn, err := auth.New(auth.Options{Tokens: tokens, ClientCAs: cas, Registerer: reg})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle(webhook.Pattern, authn.Wrap(rc))
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = tlsCfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &tlsHarness{url: srv.URL, pki: pki, other: other, brokers: brokers, topics: topics, reg: reg}
}

func (h *tlsHarness) kubeconfig(t *testing.T, o webhook.KubeconfigOptions) string {
	t.Helper()
	o.Server = h.url
	kc, err := webhook.WriteKubeconfig(o)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "webhook.kubeconfig")
	require.NoError(t, os.WriteFile(path, kc, 0o600))
	return path
}

// TestApiserverBackendOverTLS drives the receiver with kube-apiserver's
// own webhook backend configured by the kubeconfig WriteKubeconfig
// generates: HTTPS with the CA, and either a client certificate (batch
// mode) or a bearer token (blocking mode). Every event arrives with the
// cluster of the credential.
func TestApiserverBackendOverTLS(t *testing.T) {
	h := newTLSHarness(t)
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:60]
	certA := h.pki.Clients["cluster-a"]
	configs := map[audittest.Mode]webhook.KubeconfigOptions{
		audittest.ModeBatch:    {Cluster: "cluster-a", CAFile: h.pki.CAFile, ClientCertFile: certA.CertFile, ClientKeyFile: certA.KeyFile},
		audittest.ModeBlocking: {Cluster: "cluster-b", CAFile: h.pki.CAFile, Token: tokenB},
	}
	for _, mode := range []audittest.Mode{audittest.ModeBatch, audittest.ModeBlocking} {
		backend := audittest.WebhookBackendFromKubeconfig(t, h.kubeconfig(t, configs[mode]), mode)
		if mode == audittest.ModeBlocking {
			for i := 0; i < len(evs); i += 20 {
				require.True(t, backend.ProcessEvents(evs[i:i+20]...))
			}
		} else {
			require.True(t, backend.ProcessEvents(evs...))
		}
		backend.Shutdown()
	}
	got := collect(t, h.brokers, h.topics.Raw, 2*len(evs))
	perCluster := map[string]int{}
	for _, r := range got {
		perCluster[string(r.HeaderValue(schemas.HeaderCluster))]++
	}
	require.Equal(t, map[string]int{"cluster-a": len(evs), "cluster-b": len(evs)}, perCluster)
}

// TestApiserverBackendWithAnotherClustersTokenFails checks that the
// apiserver's backend itself sees the failure (it would retry, then drop
// and count the events) when its token belongs to another cluster.
func TestApiserverBackendWithAnotherClustersTokenFails(t *testing.T) {
	h := newTLSHarness(t)
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:3]
	kc := h.kubeconfig(t, webhook.KubeconfigOptions{Cluster: "cluster-b", CAFile: h.pki.CAFile, Token: tokenA})
	backend := audittest.WebhookBackendFromKubeconfig(t, kc, audittest.ModeBlocking)
	require.False(t, backend.ProcessEvents(evs...))
}

// TestCredentials covers each credential against each path.
func TestCredentials(t *testing.T) {
	h := newTLSHarness(t)
	body := []byte(`{"items":[{"auditID":"x-1","stage":"ResponseComplete"}]}`)
	client := func(cert *auth.ClientFiles) *http.Client {
		pool := x509.NewCertPool()
		ca, err := os.ReadFile(h.pki.CAFile)
		require.NoError(t, err)
		pool.AppendCertsFromPEM(ca)
		cfg := &tls.Config{RootCAs: pool}
		if cert != nil {
			kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
			require.NoError(t, err)
			cfg.Certificates = []tls.Certificate{kp}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	certA, certB, foreign := h.pki.Clients["cluster-a"], h.pki.Clients["cluster-b"], h.other.Clients["cluster-a"]
	serverAsClient := auth.ClientFiles{CertFile: h.pki.ServerCertFile, KeyFile: h.pki.ServerKeyFile}
	cases := []struct {
		name    string
		cert    *auth.ClientFiles
		token   string
		cluster string
		code    int
		msg     string
	}{
		{"cert for its cluster", &certA, "", "cluster-a", 200, `"accepted":1`},
		{"cert for another cluster", &certB, "", "cluster-a", 403, `bound to cluster \"cluster-b\", not \"cluster-a\"`},
		{"cert from an untrusted CA", &foreign, "", "cluster-a", 401, "not valid"},
		{"server cert used as client cert", &serverAsClient, "", "auditpipe-producer", 401, "not valid"},
		{"token for its cluster", nil, tokenA, "cluster-a", 200, `"accepted":1`},
		{"digest-stored token", nil, tokenB, "cluster-b", 200, `"accepted":1`},
		{"token of another cluster", nil, tokenB, "cluster-a", 403, "forbidden"},
		{"unknown token", nil, "not-a-token-of-anyone-at-all", "cluster-a", 401, "unknown bearer token"},
		{"no credential", nil, "", "cluster-a", 401, "no client certificate or bearer token"},
	}
	for _, c := range cases {
		req, err := http.NewRequest(http.MethodPost, h.url+webhook.PathPrefix+c.cluster, bytes.NewReader(body))
		require.NoError(t, err)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := client(c.cert).Do(req)
		require.NoError(t, err, c.name)
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, c.code, resp.StatusCode, "%s: %s", c.name, msg)
		require.Contains(t, string(msg), c.msg, c.name)
	}
	require.Equal(t, 6.0, counterSum(t, h.reg, "auditpipe_producer_auth_failures_total"))
	problems, err := testutil.GatherAndLint(h.reg, "auditpipe_producer_auth_failures_total")
	require.NoError(t, err)
	require.Empty(t, problems)
}

// counterSum sums every series of the counter name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestParseTokens(t *testing.T) {
	_, err := auth.ParseTokens("t.csv", []byte("short,c1\n"), webhook.ValidClusterID)
	require.ErrorContains(t, err, "t.csv:1: token is shorter than 16 characters")
	_, err = auth.ParseTokens("t.csv", []byte("# c\n"+tokenA+",Bad Cluster\n"), webhook.ValidClusterID)
	require.ErrorContains(t, err, `t.csv:2: cluster id "Bad Cluster" is not valid`)
	_, err = auth.ParseTokens("t.csv", []byte(tokenA+",c1\n"+auth.Digest(tokenA)+",c2\n"), webhook.ValidClusterID)
	require.ErrorContains(t, err, "t.csv:2: same token as line 1")
	_, err = auth.ParseTokens("t.csv", []byte("sha256:abc,c1\n"), webhook.ValidClusterID)
	require.ErrorContains(t, err, "64 hex digits")
	_, err = auth.ParseTokens("t.csv", []byte("\n"), webhook.ValidClusterID)
	require.ErrorContains(t, err, "no tokens")
	tk, err := auth.ParseTokens("t.csv", []byte(tokenA+",c1\n"), webhook.ValidClusterID)
	require.NoError(t, err)
	c, ok := tk.Lookup(tokenA)
	require.True(t, ok)
	require.Equal(t, "c1", c)
	_, ok = tk.Lookup(tokenA + "x")
	require.False(t, ok)
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:8090": true, "[::1]:1": true, "localhost:1": true, ":8090": false, "0.0.0.0:1": false, "10.0.0.1:1": false, "nonsense": false} {
		require.Equal(t, want, auth.IsLoopback(addr), addr)
	}
}

func TestNewNeedsACredential(t *testing.T) {
	_, err := auth.New(auth.Options{})
	require.ErrorContains(t, err, "no credential configured")
}

// collect reads topic from the beginning until it holds n records.
func collect(t *testing.T, brokers []string, topic string, n int) []kafka.Record {
	t.Helper()
	g, err := kafkago.NewGroup(kafka.GroupConfig{Brokers: brokers, Group: "collect." + topic, Topics: []string{topic}})
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	var got []kafka.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, b.Records...)
		if len(got) >= n {
			cancel()
		}
		return nil
	}))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, n, "records on %s", topic)
	return got
}
