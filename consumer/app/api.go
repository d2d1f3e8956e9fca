package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/auditpipe/auditpipe/consumer/console"
	"github.com/auditpipe/auditpipe/consumer/search"
)

// DefaultAPIListen is where the consumer serves the search API when the
// local sink is on. Loopback, so that a default config starts without a
// token; a deployment that serves other hosts sets api.listen (":8080")
// with a token and TLS, as the Helm chart does.
const DefaultAPIListen = "127.0.0.1:8080"

// APIConfig configures the search API (/api/v1/events, /api/v1/search,
// /api/v1/clusters) and the web console that the consumer serves over its
// local store. It is served only when the local sink is on; an empty
// Listen turns it off. The rule is the all-in-one's: beyond loopback a
// token is required, and plain HTTP is refused (the token and the audit
// events would cross the network in clear) unless AllowInsecure.
type APIConfig struct {
	Listen string `json:"listen"`
	// Token is the bearer token the API requires (any address); TokenFile
	// names a file holding it instead. Give at most one.
	Token     string `json:"token"`
	TokenFile string `json:"tokenFile"`
	// TLS is the API's server certificate.
	TLS APITLSConfig `json:"tls"`
	// AllowInsecure permits plain HTTP beyond loopback (behind a TLS
	// proxy on the same host, say). The token is still required.
	AllowInsecure bool `json:"allowInsecure"`
}

// APITLSConfig names the PEM files of the API's server certificate.
type APITLSConfig struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

func (t APITLSConfig) enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// served reports whether the API is to be served.
func (c Config) served() bool { return c.Local.Enabled && c.API.Listen != "" }

// validate checks the API settings, naming the key; it reads no file.
func (c APIConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("api.listen: %q is not host:port: %w", c.Listen, err)
	}
	if c.Token != "" && c.TokenFile != "" {
		return errors.New("api.token, api.tokenFile: give one, not both")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("api.tls.certFile, api.tls.keyFile: give both or neither")
	}
	need, err := search.TokenRequired(c.Listen)
	if err != nil {
		return fmt.Errorf("api.listen: %w", err)
	}
	switch {
	case need && c.Token == "" && c.TokenFile == "":
		return fmt.Errorf("api.token: the search API listens beyond loopback (%s) and needs a token (api.token or api.tokenFile), or listen on 127.0.0.1, or set api.listen: \"\" to serve no API", c.Listen)
	case need && !c.TLS.enabled() && !c.AllowInsecure:
		return fmt.Errorf("api.tls: the search API listens beyond loopback (%s) over plain HTTP: the token and the audit events would cross the network in clear. Set api.tls.certFile and api.tls.keyFile, listen on 127.0.0.1, or set api.allowInsecure: true to accept the risk", c.Listen)
	}
	return nil
}

// token returns the configured token, reading TokenFile.
func (c APIConfig) token() (string, error) {
	if c.TokenFile == "" {
		return c.Token, nil
	}
	data, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("api.tokenFile: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("api.tokenFile: %s is empty", c.TokenFile)
	}
	return tok, nil
}

// checkAPIFiles reads the API's token file and certificate, when the API
// is served: what "consumer validate" checks without serving anything.
func (c Config) checkAPIFiles() error {
	if !c.served() {
		return nil
	}
	if _, err := c.API.token(); err != nil {
		return err
	}
	_, err := c.API.TLS.load()
	return err
}

// load reads the certificate; nil without one.
func (t APITLSConfig) load() (*tls.Config, error) {
	if !t.enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("api.tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// APIServer is the running search API.
type APIServer struct {
	// URL is the base URL clients use (http or https, the bound address).
	URL string
	srv *http.Server
	cfg APIConfig
	// routes are the API's handlers, wrapped by the token check of the
	// moment (api), which Reload swaps.
	routes http.Handler
	api    atomic.Pointer[http.Handler]
	cert   atomic.Pointer[tls.Certificate]
}

// Reload re-reads the token file and the certificate (SIGHUP): rotated
// secrets take effect without a restart. On error the previous ones stay.
func (s *APIServer) Reload() error {
	if s == nil {
		return nil
	}
	token, err := s.cfg.token()
	if err != nil {
		return err
	}
	api, err := search.ProtectAPI(s.cfg.Listen, token, s.routes)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if s.cfg.TLS.enabled() {
		tlsCfg, err := s.cfg.TLS.load()
		if err != nil {
			return err
		}
		s.cert.Store(&tlsCfg.Certificates[0])
	}
	s.api.Store(&api)
	return nil
}

// Shutdown stops accepting requests and waits for those in flight until
// ctx ends.
func (s *APIServer) Shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// StartAPI serves the search API over the local store on Config.API.Listen
// in the background. It returns nil, nil when the API is not served (local
// sink off, or api.listen empty). Shut the server down before Close
// closes the store.
func (a *App) StartAPI() (*APIServer, error) {
	if !a.cfg.served() || a.store == nil {
		return nil, nil
	}
	c := a.cfg.API
	logger := a.log.With("component", "api")
	routes := http.NewServeMux()
	routes.Handle("/api/", search.NewHandler(a.store, logger))
	routes.Handle(search.ClustersPath, search.NewClustersHandler(a.store, a.cfg.FleetFile, logger))
	s := &APIServer{cfg: c, routes: routes}
	// Reload loads the token and the certificate the first time too.
	if err := s.Reload(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*s.api.Load()).ServeHTTP(w, r) }))
	// The web console: public static files; its data comes from /api/,
	// with the API's token.
	page, err := console.Handler()
	if err != nil {
		return nil, err
	}
	mux.Handle("/", page)

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", c.Listen, err)
	}
	scheme := "http"
	if c.TLS.enabled() {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil }}
		ln, scheme = tls.NewListener(ln, tlsCfg), "https"
	}
	s.URL = scheme + "://" + ln.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("search API stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	logger.Info("search API listening", "url", s.URL, "tls", c.TLS.enabled())
	return s, nil
}
