package allinone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/producer/auth"
)

// TestQueryAPIOverTLSBeyondLoopback serves the query API on every
// interface with a token and a certificate: a client that trusts the CA
// and sends the token gets its answer over TLS, one without the token gets
// 401, and a plain-HTTP client gets no API answer.
func TestQueryAPIOverTLSBeyondLoopback(t *testing.T) {
	pki, err := auth.GenerateDevPKI(t.TempDir(), []string{"127.0.0.1"}, nil)
	require.NoError(t, err)
	cfg := testConfig(t)
	cfg.API.Listen = "0.0.0.0:0"
	cfg.API.Token = "query-token-0123456789"
	cfg.API.TLS = auth.TLSFiles{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile}
	p := startPipeline(t, cfg)

	u, err := url.Parse(p.APIURL())
	require.NoError(t, err)
	require.Equal(t, "https", u.Scheme)
	_, port, err := net.SplitHostPort(u.Host)
	require.NoError(t, err)
	base := "https://127.0.0.1:" + port

	caPEM, err := os.ReadFile(pki.CAFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	get := func(c *http.Client, target, token string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, target, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}

	code, body, err := get(client, base+"/api/v1/events?limit=1", cfg.API.Token)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"events"`)

	code, _, err = get(client, base+"/api/v1/events?limit=1", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, code)

	// Plain HTTP on the same port reaches no API.
	code, body, err = get(http.DefaultClient, "http://127.0.0.1:"+port+"/api/v1/events?limit=1", cfg.API.Token)
	if err == nil {
		require.Equal(t, http.StatusBadRequest, code, body)
		require.NotContains(t, body, `"events"`)
	}
}

// TestQueryAPIRefusesPlainHTTPBeyondLoopback checks that the pipeline does
// not start with the API on a network address over plain HTTP, and says
// what to do; api.allowInsecure is the explicit way out.
func TestQueryAPIRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	cfg := testConfig(t)
	cfg.API.Listen = "0.0.0.0:0"
	cfg.API.Token = "query-token-0123456789"
	_, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "api.tls: the query API listens beyond loopback (0.0.0.0:0) over plain HTTP")
	require.ErrorContains(t, err, "api.allowInsecure")

	cfg.API.AllowInsecure = true
	require.NoError(t, cfg.Validate())

	cfg.API.AllowInsecure = false
	cfg.API.Listen = "127.0.0.1:0"
	require.NoError(t, cfg.Validate(), "loopback needs no TLS")

	cfg.API.TLS = auth.TLSFiles{CertFile: "c.crt"}
	require.ErrorContains(t, cfg.Validate(), "api.tls: certFile and keyFile must be set together")
}
