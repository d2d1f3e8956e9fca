// Package auth binds every webhook request to exactly one cluster through
// the caller's credential, so that no apiserver can write into another
// cluster's audit trail.
//
// Two credentials are accepted, both of which kube-apiserver's webhook
// kubeconfig can carry:
//   - a TLS client certificate signed by the configured client CA; the
//     certificate's Subject Common Name (CN) is the cluster id;
//   - a bearer token listed in a tokens file (token → cluster). Tokens are
//     compared as SHA-256 digests in constant time, and the file may hold
//     the digests instead of the tokens.
//
// A request without a credential, or with one that is not valid, gets 401;
// a valid credential for cluster A on the path of cluster B gets 403.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// ClusterValidator reports whether a cluster id is acceptable. The webhook
// package's ValidClusterID is the one used in production; it is passed in
// to keep this package free of the receiver.
type ClusterValidator func(id string) bool

// Tokens maps SHA-256 digests of bearer tokens to cluster ids.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest  [sha256.Size]byte
	cluster string
}

// DigestPrefix marks a tokens-file entry that holds the hex SHA-256 digest
// of the token rather than the token itself.
const DigestPrefix = "sha256:"

// ParseTokens reads a tokens file: one `token,cluster` per line (the shape
// of kube-apiserver's --token-auth-file), blank lines and lines starting
// with # ignored. A token written as sha256:<64 hex digits> is the digest
// of the token, so the file need not hold the secret itself. name is used
// in errors.
func ParseTokens(name string, data []byte, valid ClusterValidator) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		token, cluster, ok := strings.Cut(line, ",")
		token, cluster = strings.TrimSpace(token), strings.TrimSpace(cluster)
		if !ok || token == "" || cluster == "" || strings.Contains(cluster, ",") {
			return nil, fmt.Errorf("%s:%d: want `token,cluster`", name, n)
		}
		if valid != nil && !valid(cluster) {
			return nil, fmt.Errorf("%s:%d: cluster id %q is not valid", name, n, cluster)
		}
		var e tokenEntry
		e.cluster = cluster
		if hexDigest, ok := strings.CutPrefix(token, DigestPrefix); ok {
			b, err := hex.DecodeString(hexDigest)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("%s:%d: %s must be followed by 64 hex digits", name, n, DigestPrefix)
			}
			copy(e.digest[:], b)
		} else {
			if len(token) < 16 {
				return nil, fmt.Errorf("%s:%d: token is shorter than 16 characters", name, n)
			}
			e.digest = sha256.Sum256([]byte(token))
		}
		if prev, dup := seen[e.digest]; dup {
			return nil, fmt.Errorf("%s:%d: same token as line %d", name, n, prev)
		}
		seen[e.digest] = n
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%s: no tokens", name)
	}
	return t, nil
}

// LoadTokens reads and parses the tokens file at path.
func LoadTokens(path string, valid ClusterValidator) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	return ParseTokens(path, data, valid)
}

// Digest returns the tokens-file form of token's digest (sha256:<hex>).
func Digest(token string) string {
	d := sha256.Sum256([]byte(token))
	return DigestPrefix + hex.EncodeToString(d[:])
}

// Lookup returns the cluster the token is bound to. Every entry is
// compared, each in constant time, so the time taken does not depend on
// which entry (if any) matched.
func (t *Tokens) Lookup(token string) (string, bool) {
	if t == nil {
		return "", false
	}
	d := sha256.Sum256([]byte(token))
	match := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return t.entries[match].cluster, true
}

// Mode says how the cluster of a request is established.
type Mode int

const (
	// ModeCredential requires a client certificate or a bearer token.
	ModeCredential Mode = iota
	// ModePath trusts the cluster id in the path. Only for a receiver on
	// loopback (or one explicitly allowed to be insecure).
	ModePath
)

// Authenticator is the HTTP middleware that binds requests to clusters.
type Authenticator struct {
	mode Mode
	// creds are swapped whole by SetCredentials (SIGHUP) while requests
	// read them.
	creds    atomic.Pointer[credentials]
	logger   *slog.Logger
	failures *prometheus.CounterVec
}

type credentials struct {
	tokens *Tokens
	cas    *x509.CertPool
}

// SetCredentials replaces the tokens and client CAs (a reload); requests
// in progress finish with the ones they started with. In credential mode
// at least one of them must be set.
func (a *Authenticator) SetCredentials(tokens *Tokens, cas *x509.CertPool) error {
	if a.mode == ModeCredential && tokens == nil && cas == nil {
		return errors.New("auth: no credential configured: set a tokens file or a client CA")
	}
	a.creds.Store(&credentials{tokens: tokens, cas: cas})
	return nil
}

// Options configures an Authenticator.
type Options struct {
	Mode Mode
	// Tokens enables bearer-token authentication; nil disables it.
	Tokens *Tokens
	// ClientCAs enables client-certificate authentication: a certificate
	// the TLS server received (tls.RequestClientCert) must chain to one of
	// them and allow client authentication; its CN is the cluster.
	ClientCAs *x509.CertPool
	Logger    *slog.Logger
	// Registerer gets auditpipe_producer_auth_failures_total.
	Registerer prometheus.Registerer
}

// New returns an Authenticator.
func New(o Options) (*Authenticator, error) {
	if o.Mode == ModeCredential && o.Tokens == nil && o.ClientCAs == nil {
		return nil, errors.New("auth: no credential configured: set a tokens file or a client CA")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{mode: o.Mode, logger: o.Logger,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_producer_auth_failures_total",
			Help: "Webhook requests refused by authentication (401) or authorization (403), by reason.",
		}, []string{"reason"})}
	a.creds.Store(&credentials{tokens: o.Tokens, cas: o.ClientCAs})
	if o.Registerer != nil {
		if err := telemetry.RegisterAll(o.Registerer, a.failures); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	return a, nil
}

// Identify returns the cluster r's credential is bound to. ok is false
// when r carries no valid credential; reason then says why.
func (a *Authenticator) Identify(r *http.Request) (cluster, reason string, ok bool) {
	creds := a.creds.Load()
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && creds.cas != nil {
		leaf := r.TLS.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, c := range r.TLS.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: creds.cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return "", fmt.Sprintf("client certificate %q is not valid: %v", leaf.Subject.CommonName, err), false
		}
		if leaf.Subject.CommonName == "" {
			return "", "client certificate has no Common Name (it names the cluster)", false
		}
		return leaf.Subject.CommonName, "", true
	}
	if authz := r.Header.Get("Authorization"); authz != "" {
		scheme, token, found := strings.Cut(authz, " ")
		if !found || !strings.EqualFold(scheme, "Bearer") || creds.tokens == nil {
			return "", "unsupported Authorization header", false
		}
		c, ok := creds.tokens.Lookup(strings.TrimSpace(token))
		if !ok {
			return "", "unknown bearer token", false
		}
		return c, "", true
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return "", "client certificates are not accepted (no client CA configured)", false
	}
	return "", "no client certificate or bearer token", false
}

// Wrap returns next guarded by the authenticator. The cluster is the
// {cluster} path value; next sees only requests whose credential is bound
// to it.
func (a *Authenticator) Wrap(next http.Handler) http.Handler {
	if a.mode == ModePath {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := r.PathValue("cluster")
		got, reason, ok := a.Identify(r)
		if !ok {
			a.failures.WithLabelValues("unauthenticated").Inc()
			a.logger.Warn("webhook request without a valid credential", "remote", r.RemoteAddr, "path_cluster", want, "reason", reason)
			w.Header().Set("WWW-Authenticate", `Bearer realm="auditpipe"`)
			writeError(w, http.StatusUnauthorized, "unauthorized: "+reason)
			return
		}
		if got != want {
			a.failures.WithLabelValues("wrong_cluster").Inc()
			a.logger.Warn("webhook credential used for another cluster", "remote", r.RemoteAddr, "credential_cluster", got, "path_cluster", want)
			writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: the credential is bound to cluster %q, not %q", got, want))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	// The body is unread: closing spares reading it (net/http would, to
	// reuse the connection, for as long as the client takes to send it).
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
