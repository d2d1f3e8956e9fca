package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles names the PEM files of the receiver's TLS server.
type TLSFiles struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ClientCAFile, when set, enables client-certificate authentication:
	// certificates signed by it are verified and their CN is the cluster.
	ClientCAFile string `json:"clientCAFile"`
}

// Enabled reports whether a server certificate is configured.
func (f TLSFiles) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" }

// Validate checks that cert and key come together and that a client CA
// has a server certificate to go with it.
func (f TLSFiles) Validate() error {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return errors.New("tls: certFile and keyFile must be set together")
	}
	if f.ClientCAFile != "" && f.CertFile == "" {
		return errors.New("tls: clientCAFile needs certFile and keyFile (client certificates only exist over TLS)")
	}
	return nil
}

// ServerConfig loads the files into a TLS server configuration (TLS 1.2 or
// newer) and returns the client CA pool (nil without ClientCAFile), which
// goes to Options.ClientCAs. Client certificates are requested but not
// verified in the handshake: the Authenticator verifies them, so a bad
// certificate gets an HTTP 401 that says why instead of a TLS alert, and a
// request may still authenticate with a token.
func (f TLSFiles) ServerConfig() (*tls.Config, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: load server certificate %s / %s: %w", f.CertFile, f.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.ClientCAFile == "" {
		return cfg, nil, nil
	}
	pemData, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: read client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, nil, fmt.Errorf("tls: client CA %s holds no PEM certificate", f.ClientCAFile)
	}
	cfg.ClientAuth = tls.RequestClientCert
	return cfg, pool, nil
}

// IsLoopback reports whether the listen address addr (host:port) binds
// only loopback interfaces. An empty host or 0.0.0.0 binds everything.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DevPKI is a self-signed CA with a server certificate and one client
// certificate per cluster, for tests and local runs. Never for production:
// the CA key sits next to the certificates.
type DevPKI struct {
	Dir            string
	CAFile         string
	ServerCertFile string
	ServerKeyFile  string
	// Clients maps a cluster id to its client certificate and key files.
	Clients map[string]ClientFiles
}

// ClientFiles are one client certificate and its key.
type ClientFiles struct{ CertFile, KeyFile string }

// GenerateDevPKI writes ca.crt, server.crt/.key (valid for hosts, which
// may be DNS names or IP addresses) and <cluster>.crt/.key for each
// cluster into dir. Certificates are valid for 30 days.
func GenerateDevPKI(dir string, hosts, clusters []string) (*DevPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev pki: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev pki: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "auditpipe dev CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("dev pki: create CA: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &DevPKI{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"), Clients: map[string]ClientFiles{}}
	if err := writePEM(p.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, "ca.key"), caKey); err != nil {
		return nil, err
	}
	issue := func(name, cn string, usage x509.ExtKeyUsage, hosts []string) (ClientFiles, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return ClientFiles{}, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(30 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return ClientFiles{}, fmt.Errorf("dev pki: issue %s: %w", cn, err)
		}
		f := ClientFiles{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
		if err := writePEM(f.CertFile, "CERTIFICATE", der); err != nil {
			return ClientFiles{}, err
		}
		return f, writeKey(f.KeyFile, key)
	}
	srv, err := issue("server", "auditpipe-producer", x509.ExtKeyUsageServerAuth, hosts)
	if err != nil {
		return nil, err
	}
	p.ServerCertFile, p.ServerKeyFile = srv.CertFile, srv.KeyFile
	for _, c := range clusters {
		f, err := issue("client-"+c, c, x509.ExtKeyUsageClientAuth, nil)
		if err != nil {
			return nil, err
		}
		p.Clients[c] = f
	}
	return p, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("dev pki: %w", err)
	}
	return nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("dev pki: %w", err)
	}
	return writePEM(path, "PRIVATE KEY", der)
}
