package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// TLS configures encryption and server verification of the connections to
// the brokers, and optionally the client certificate of mutual TLS. The
// zero value means plaintext.
type TLS struct {
	Enabled bool `json:"enabled"`
	// CAFile is a PEM bundle the brokers' certificates are verified
	// against; empty means the system roots.
	CAFile string `json:"caFile"`
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// brokers that require mutual TLS; both or neither.
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ServerName overrides the name the brokers' certificates must carry;
	// empty means the host of each broker address.
	ServerName string `json:"serverName"`
	// InsecureSkipVerify accepts any server certificate. For experiments
	// only: it gives up the protection against a man in the middle that
	// TLS is there for.
	InsecureSkipVerify bool `json:"insecureSkipVerify"`
}

// Validate checks that the files are consistent and load.
func (t TLS) Validate() error {
	_, err := t.Config()
	return err
}

// Config loads the files and returns the client TLS configuration; nil
// when TLS is disabled. Errors name the file that failed.
func (t TLS) Config() (*tls.Config, error) {
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify {
			// Files without enabled look like TLS but would silently
			// connect in plaintext.
			return nil, errors.New("tls: files or options are set but tls.enabled is false")
		}
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit opt-in, documented above
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: CA file %s: no PEM certificate in it", t.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s / key %s: %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("tls: certFile and keyFile go together: set both for mutual TLS, or neither")
	}
	return c, nil
}

// ErrTLSHandshake and ErrAuthentication are wrapped by the adapters'
// errors when a broker's certificate is not trusted (or ours is refused)
// and when SASL authentication fails: retrying such an error at once does
// not help, so callers back off, and errors.Is tells them apart from an
// outage.
var (
	ErrTLSHandshake   = errors.New("TLS handshake")
	ErrAuthentication = errors.New("authentication failed")
)

// Dialer opens the connections of a Kafka client: TCP, then the TLS
// handshake when TLS is configured. It exists so that both adapters report
// a connection failure the same way, naming the broker and the step that
// failed ("kafka broker 10.0.0.1:9093: TLS handshake: x509: certificate
// signed by unknown authority"), which neither client library does.
type Dialer struct {
	// TLS is the client configuration; nil dials plaintext.
	TLS     *tls.Config
	Timeout time.Duration
}

// NewDialer returns the dialer for t, loading its files.
func NewDialer(t TLS, timeout time.Duration) (*Dialer, error) {
	c, err := t.Config()
	if err != nil {
		return nil, err
	}
	return &Dialer{TLS: c, Timeout: timeout}, nil
}

// DialContext connects to addr and completes the TLS handshake.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	nd := net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("kafka broker %s: connect: %w", addr, err)
	}
	if d.TLS == nil {
		return conn, nil
	}
	c := d.TLS.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	tc := tls.Client(conn, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("kafka broker %s: %w: %w", addr, ErrTLSHandshake, err)
	}
	return &tlsConn{Conn: tc, addr: addr}, nil
}

// tlsConn names the broker in TLS alerts that arrive after the handshake
// returned: with TLS 1.3 a broker that refuses the client certificate (or
// its absence) says so only after the client's side of the handshake
// completed, at the first read ("remote error: tls: certificate
// required"). Other errors, io.EOF above all, pass unchanged.
type tlsConn struct {
	net.Conn
	addr string
}

func (c *tlsConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	return n, c.describe(err)
}

func (c *tlsConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	return n, c.describe(err)
}

func (c *tlsConn) describe(err error) error {
	// crypto/tls reports an alert from the peer as a net.OpError with Op
	// "remote error" (its alert type is not exported).
	var op *net.OpError
	if err != nil && errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("kafka broker %s: %w: %w", c.addr, ErrTLSHandshake, err)
	}
	return err
}

// Dial is DialContext without a context, for clients whose dial hook
// takes none (sarama).
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// Resolved returns s with the password read from PasswordFile when that is
// set (one trailing newline trimmed, as editors and `echo` leave one).
// Adapters call it every time they build a client, so a rotated password
// file is picked up by the next client.
func (s SASL) Resolved() (SASL, error) {
	if s.PasswordFile == "" {
		return s, nil
	}
	if s.Password != "" {
		return s, errors.New("sasl: set password or passwordFile, not both")
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return s, fmt.Errorf("sasl: read password file: %w", err)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return s, fmt.Errorf("sasl: password file %s is empty", s.PasswordFile)
	}
	s.Password = p
	return s, nil
}

// AuthFailed wraps err, an authentication failure a client reported, with
// what was tried and where, so that a log line says which user failed on
// which brokers with which mechanism.
func AuthFailed(err error, brokers []string, s SASL) error {
	if errors.Is(err, ErrAuthentication) {
		return err // described already, by an inner layer
	}
	return fmt.Errorf("%s: SASL %s %w for user %q: %w", brokerNames(brokers), s.Mechanism, ErrAuthentication, s.Username, err)
}

// Refused reports whether err says that the client or a broker refused
// the other's credentials: a broker certificate that does not verify, a
// TLS alert from the broker (a refused or missing client certificate), or
// a failed SASL authentication. Unlike an EOF or a reset in the middle of
// a handshake, which a restarting broker causes too, these do not go away
// by retrying.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	var verify *tls.CertificateVerificationError
	var op *net.OpError
	return errors.Is(err, ErrAuthentication) || errors.As(err, &verify) ||
		(errors.Is(err, ErrTLSHandshake) && errors.As(err, &op) && op.Op == "remote error")
}

// brokerNames is "kafka broker a:1" or "kafka brokers a:1,b:2".
func brokerNames(brokers []string) string {
	if len(brokers) == 1 {
		return "kafka broker " + brokers[0]
	}
	return "kafka brokers " + strings.Join(brokers, ",")
}
