package search

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// RequireToken lets through only requests that carry
// "Authorization: Bearer <token>"; others get 401 with a JSON error. It fails
// closed: with an empty token every request is refused, so a missing secret
// cannot silently open the API.
func RequireToken(token string, next http.Handler) http.Handler {
	// Compare digests so that the comparison takes the same time whatever
	// the lengths (subtle.ConstantTimeCompare returns early on a length
	// mismatch).
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		if token == "" || !ok {
			unauthorized(w, "missing bearer token: send Authorization: Bearer <token>")
			return
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			unauthorized(w, "invalid token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="auditpipe"`)
	writeJSON(w, http.StatusUnauthorized, ErrorResponse{Error: msg})
}

// TokenRequired reports whether an API listening on addr (host:port) is
// reachable beyond this machine and so needs a token: true unless the host is
// a loopback IP or "localhost". An empty host (":8080") listens on every
// interface; a host name other than localhost may resolve to anything.
func TokenRequired(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return false, nil
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip == nil || !ip.IsLoopback(), nil
}

// ProtectAPI wraps the API handler for the listen address addr: with
// RequireToken when a token is set (on any address), and it refuses (error)
// an address beyond loopback without a token, so that the audit log is never
// served unauthenticated to the network.
func ProtectAPI(addr, token string, next http.Handler) (http.Handler, error) {
	required, err := TokenRequired(addr)
	if err != nil {
		return nil, err
	}
	switch {
	case token != "":
		return RequireToken(token, next), nil
	case required:
		return nil, fmt.Errorf("the API listens on %s, beyond loopback: a token is required (set one, or listen on 127.0.0.1)", addr)
	}
	return next, nil
}
