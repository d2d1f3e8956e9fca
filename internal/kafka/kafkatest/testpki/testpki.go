// Package testpki generates the throwaway certificates of the Kafka TLS
// tests: a CA, a server certificate for the brokers, a client certificate
// for mutual TLS, and a second CA that signed nothing the brokers use (the
// "untrusted" case). The in-process broker tests use it directly; the
// Apache Kafka run (deploy/kafka/test-kafka.sh) through
// deploy/local/cmd/testcerts. Never for production: the keys are written
// unencrypted.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names in the directory Write fills.
const (
	CACert          = "ca.crt"
	ServerCert      = "server.crt"
	ServerKey       = "server.key"
	ServerKeystore  = "server.keystore.pem" // key + chain, for Kafka's ssl.keystore.type=PEM
	ClientCert      = "client.crt"
	ClientKey       = "client.key"
	UntrustedCACert = "untrusted-ca.crt"
)

// ClientCommonName is the subject CN of the client certificate; Kafka maps
// it to the principal "User:CN=<it>".
const ClientCommonName = "auditpipe-test-client"

// PKI is a generated set of certificates, as files under Dir.
type PKI struct {
	Dir string
	// CAPool trusts the CA; ServerTLS is the brokers' certificate.
	CAPool    *x509.CertPool
	ServerTLS tls.Certificate
}

// Path returns the path of one of the files.
func (p PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// Write generates the certificates into dir (created 0700). The server
// certificate is valid for hosts (IP addresses or DNS names).
func Write(dir string, hosts []string) (PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return PKI{}, fmt.Errorf("testpki: %w", err)
	}
	ca, caKey, err := newCA("auditpipe test CA")
	if err != nil {
		return PKI{}, err
	}
	untrusted, _, err := newCA("auditpipe untrusted test CA")
	if err != nil {
		return PKI{}, err
	}
	server, serverKey, err := newLeaf(ca, caKey, "auditpipe test broker", hosts, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return PKI{}, err
	}
	client, clientKey, err := newLeaf(ca, caKey, ClientCommonName, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return PKI{}, err
	}
	serverKeyPEM, err := keyPEM(serverKey)
	if err != nil {
		return PKI{}, err
	}
	clientKeyPEM, err := keyPEM(clientKey)
	if err != nil {
		return PKI{}, err
	}
	files := map[string][]byte{
		CACert:          certPEM(ca),
		UntrustedCACert: certPEM(untrusted),
		ServerCert:      certPEM(server),
		ServerKey:       serverKeyPEM,
		ServerKeystore:  append(append(serverKeyPEM, certPEM(server)...), certPEM(ca)...),
		ClientCert:      certPEM(client),
		ClientKey:       clientKeyPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return PKI{}, fmt.Errorf("testpki: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.X509KeyPair(certPEM(server), serverKeyPEM)
	if err != nil {
		return PKI{}, fmt.Errorf("testpki: server key pair: %w", err)
	}
	return PKI{Dir: dir, CAPool: pool, ServerTLS: pair}, nil
}

// ServerConfig is the brokers' TLS configuration; with clientAuth it
// requires a client certificate signed by the CA.
func (p PKI) ServerConfig(clientAuth bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.ServerTLS}, MinVersion: tls.VersionTLS12}
	if clientAuth {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.CAPool
	}
	return c
}

func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, hosts []string, usage x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("testpki: certificate %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// keyPEM is PKCS#8, the only unencrypted key format Kafka's PEM keystore
// reads.
func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("testpki: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
