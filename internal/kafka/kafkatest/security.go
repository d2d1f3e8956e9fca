package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/embedded"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest/testpki"
)

// The environment variables that point the security tests at the secure
// listeners of an external cluster; deploy/kafka/test-kafka.sh sets them
// (export_security_env). Without SASLSSLEnv the tests start in-process
// brokers with TLS instead.
const (
	// SASLSSLEnv: bootstrap addresses of a SASL_SSL listener (PLAIN,
	// SCRAM-SHA-256 and SCRAM-SHA-512 for the user of SASLUserEnv).
	SASLSSLEnv = "AUDITPIPE_TEST_KAFKA_SASL_SSL"
	// MTLSEnv: bootstrap addresses of an SSL listener that requires a
	// client certificate signed by the test CA.
	MTLSEnv = "AUDITPIPE_TEST_KAFKA_MTLS"
	// PKIEnv: the directory of the test certificates (testpki's files).
	PKIEnv              = "AUDITPIPE_TEST_KAFKA_PKI"
	SASLUserEnv         = "AUDITPIPE_TEST_KAFKA_SASL_USER"
	SASLPasswordFileEnv = "AUDITPIPE_TEST_KAFKA_SASL_PASSWORD_FILE"
)

// SecureCluster is a cluster with a SASL_SSL listener and a mutual TLS
// listener, and what a client needs to connect to them.
type SecureCluster struct {
	SASLSSL      []string
	MTLS         []string
	PKI          testpki.PKI // only Dir is set for an external cluster
	User         string
	PasswordFile string
	// ReportsAuthFailures is true for Apache Kafka, which answers a failed
	// SASL authentication with SASL_AUTHENTICATION_FAILED. The in-process
	// broker (kfake) closes the connection instead, so the clients can
	// only report an EOF, and the suite checks less of the error.
	ReportsAuthFailures bool
}

// SASL returns the connection to the SASL_SSL listener with mechanism,
// verifying the brokers against the test CA.
func (c SecureCluster) SASL(mechanism string) kafka.Connection {
	return kafka.Connection{
		Brokers:  c.SASLSSL,
		ClientID: "auditpipe-security-test",
		TLS:      kafka.TLS{Enabled: true, CAFile: c.PKI.Path(testpki.CACert)},
		SASL:     kafka.SASL{Mechanism: mechanism, Username: c.User, PasswordFile: c.PasswordFile},
	}
}

// MutualTLS returns the connection to the mutual TLS listener with the
// test client certificate.
func (c SecureCluster) MutualTLS() kafka.Connection {
	return kafka.Connection{
		Brokers:  c.MTLS,
		ClientID: "auditpipe-security-test",
		TLS: kafka.TLS{Enabled: true, CAFile: c.PKI.Path(testpki.CACert),
			CertFile: c.PKI.Path(testpki.ClientCert), KeyFile: c.PKI.Path(testpki.ClientKey)},
	}
}

// SecureBrokers returns the secure listeners named by SASLSSLEnv and the
// other variables, or starts two in-process brokers with the same setup
// (one with TLS and SASL, one with TLS requiring client certificates),
// stopped when the test ends.
func SecureBrokers(tb testing.TB) SecureCluster {
	tb.Helper()
	if v := os.Getenv(SASLSSLEnv); v != "" {
		c := SecureCluster{
			SASLSSL:      strings.Split(v, ","),
			MTLS:         strings.Split(os.Getenv(MTLSEnv), ","),
			PKI:          testpki.PKI{Dir: os.Getenv(PKIEnv)},
			User:         os.Getenv(SASLUserEnv),
			PasswordFile: os.Getenv(SASLPasswordFileEnv),

			ReportsAuthFailures: true,
		}
		if c.PKI.Dir == "" || c.User == "" || c.PasswordFile == "" || os.Getenv(MTLSEnv) == "" {
			tb.Fatalf("%s is set, but not all of %s, %s, %s, %s", SASLSSLEnv, MTLSEnv, PKIEnv, SASLUserEnv, SASLPasswordFileEnv)
		}
		return c
	}
	dir := tb.TempDir()
	pki, err := testpki.Write(filepath.Join(dir, "pki"), []string{"127.0.0.1", "localhost"})
	require.NoError(tb, err)
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	password := hex.EncodeToString(secret)
	passwordFile := filepath.Join(dir, "password")
	require.NoError(tb, os.WriteFile(passwordFile, []byte(password+"\n"), 0o600))
	const user = "alice"
	var users []kafka.SASL
	for _, m := range []string{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
		users = append(users, kafka.SASL{Mechanism: m, Username: user, Password: password})
	}
	saslBroker := StartBroker(tb, embedded.Config{TLS: pki.ServerConfig(false), Users: users})
	mtlsBroker := StartBroker(tb, embedded.Config{TLS: pki.ServerConfig(true)})
	return SecureCluster{SASLSSL: saslBroker.Addrs(), MTLS: mtlsBroker.Addrs(), PKI: pki, User: user, PasswordFile: passwordFile}
}

// SecurityFactory builds one adapter's clients for RunSecurity. Unlike
// Factory's, its constructors return their errors: the suite checks them.
type SecurityFactory struct {
	Name        string
	NewProducer func(kafka.ProducerConfig) (kafka.Producer, error)
	NewGroup    func(kafka.GroupConfig) (kafka.GroupConsumer, error)
	NewAdmin    func(kafka.AdminConfig) (kafka.Admin, error)
}

// RunSecurity runs the TLS and SASL behaviour every adapter must show, as
// subtests of t, on SecureBrokers: records go round over TLS with each
// SASL mechanism and with mutual TLS; a wrong password and an untrusted
// broker certificate fail every client with an error that names the
// broker and what failed; and a group member that cannot authenticate is
// restarted by kafka.SuperviseFunc with a growing backoff, not in a tight
// loop.
func RunSecurity(t *testing.T, f SecurityFactory) {
	c := SecureBrokers(t)
	for _, m := range []string{kafka.SASLScramSHA512, kafka.SASLScramSHA256, kafka.SASLPlain} {
		t.Run("RoundTrip/"+m, func(t *testing.T) { securityRoundTrip(t, f, c.SASL(m)) })
	}
	t.Run("RoundTrip/MutualTLS", func(t *testing.T) { securityRoundTrip(t, f, c.MutualTLS()) })
	t.Run("MutualTLSWithoutCertificate", func(t *testing.T) { testNoClientCert(t, f, c) })
	t.Run("WrongPassword", func(t *testing.T) { testWrongPassword(t, f, c) })
	t.Run("UntrustedCA", func(t *testing.T) { testUntrustedCA(t, f, c) })
	t.Run("WrongPasswordBacksOff", func(t *testing.T) { testWrongPasswordBacksOff(t, f, c) })
}

func securityRoundTrip(t *testing.T, f SecurityFactory, conn kafka.Connection) {
	require.NoError(t, conn.Validate())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	name := uniqueName(t)
	topic := "sec-" + name

	admin, err := f.NewAdmin(conn.AdminConfig())
	require.NoError(t, err, "admin over %v", conn.Brokers)
	defer func() { _ = admin.Close() }()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}))

	p, err := f.NewProducer(conn.ProducerConfig())
	require.NoError(t, err, "producer over %v", conn.Brokers)
	defer func() { _ = p.Close() }()
	want := map[string]bool{}
	var records []kafka.Record
	for i := range 3 {
		v := fmt.Sprintf("secret-%d", i)
		want[v] = true
		records = append(records, kafka.Record{Topic: topic, Key: []byte(v), Value: []byte(v)})
	}
	require.NoError(t, p.Produce(ctx, records...))

	gc := conn.GroupConfig("sec-group-"+name, topic)
	gc.MaxWait = 20 * time.Millisecond
	gc.SessionTimeout = testSessionTimeout
	g, err := f.NewGroup(gc)
	require.NoError(t, err, "group over %v", conn.Brokers)
	defer func() { _ = g.Close() }()
	rec := newRecorder(t, topic, 0)
	r := startRun(t, g, rec.handler())
	waitFor(t, "the 3 records consumed over "+strings.Join(conn.Brokers, ","), func() bool { return rec.hasValues(want) })
	r.stop("secure group")

	offs, err := admin.CommittedOffsets(ctx, gc.Group, topic)
	require.NoError(t, err)
	require.Equal(t, map[int32]int64{0: 3}, offs, "committed offsets over %v", conn.Brokers)
}

// clientErrors builds each kind of client with conn and returns the first
// error each reports, at construction or at its first use; nil when one
// unexpectedly works.
func clientErrors(t *testing.T, f SecurityFactory, conn kafka.Connection) map[string]error {
	t.Helper()
	topic := "sec-fail-" + uniqueName(t)
	out := map[string]error{}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	if p, err := f.NewProducer(conn.ProducerConfig()); err != nil {
		out["producer"] = err
	} else {
		out["producer"] = p.Produce(ctx, kafka.Record{Topic: topic, Value: []byte("x")})
		_ = p.Close()
	}
	if a, err := f.NewAdmin(conn.AdminConfig()); err != nil {
		out["admin"] = err
	} else {
		out["admin"] = a.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1})
		_ = a.Close()
	}
	gc := conn.GroupConfig("sec-fail-"+uniqueName(t), topic)
	gc.SessionTimeout = testSessionTimeout
	if g, err := f.NewGroup(gc); err != nil {
		out["group"] = err
	} else {
		// Run must give up by itself; ctx ending first is a failure.
		out["group"] = g.Run(ctx, HandlerNoop())
		if ctx.Err() != nil {
			out["group"] = nil
		}
		_ = g.Close()
	}
	return out
}

// HandlerNoop accepts every batch.
func HandlerNoop() kafka.Handler {
	return kafka.HandlerFunc(func(context.Context, kafka.Batch) error { return nil })
}

func testWrongPassword(t *testing.T, f SecurityFactory, c SecureCluster) {
	wrong := filepath.Join(t.TempDir(), "wrong-password")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	for _, m := range []string{kafka.SASLScramSHA512, kafka.SASLPlain} {
		conn := c.SASL(m)
		conn.SASL.PasswordFile = wrong
		for client, err := range clientErrors(t, f, conn) {
			if !c.ReportsAuthFailures {
				// kfake closes the connection: the clients see an
				// EOF, which kafka-go's group retries like a broker
				// restart.
				if client != "group" {
					require.Error(t, err, "%s %s with a wrong password", m, client)
				}
				continue
			}
			require.Error(t, err, "%s %s with a wrong password", m, client)
			msg := err.Error()
			t.Logf("%s %s: %s", m, client, msg)
			require.ErrorIs(t, err, kafka.ErrAuthentication, "%s %s: %s", m, client, msg)
			require.True(t, kafka.Refused(err), "%s %s: kafka.Refused(%s)", m, client, msg)
			for _, part := range []string{c.SASLSSL[0], "SASL " + m + " authentication failed", `user "` + c.User + `"`} {
				require.Contains(t, msg, part, "%s %s", m, client)
			}
			require.NotContains(t, msg, "not-the-password", "%s %s: the error leaks the password", m, client)
		}
	}
}

// testNoClientCert connects to the mutual TLS listener without a client
// certificate. With TLS 1.3 the broker refuses it after the client's side
// of the handshake completed, at the first request; the error must still
// name the broker and the TLS handshake.
func testNoClientCert(t *testing.T, f SecurityFactory, c SecureCluster) {
	conn := c.MutualTLS()
	conn.TLS.CertFile, conn.TLS.KeyFile = "", ""
	for client, err := range clientErrors(t, f, conn) {
		require.Error(t, err, "%s without a client certificate", client)
		msg := err.Error()
		t.Logf("%s: %s", client, msg)
		require.ErrorIs(t, err, kafka.ErrTLSHandshake, "%s: %s", client, msg)
		require.True(t, kafka.Refused(err), "%s: kafka.Refused(%s)", client, msg)
		require.Contains(t, msg, "kafka broker "+c.MTLS[0]+": TLS handshake: ", client)
	}
}

func testUntrustedCA(t *testing.T, f SecurityFactory, c SecureCluster) {
	conn := c.SASL(kafka.SASLScramSHA512)
	conn.TLS.CAFile = c.PKI.Path(testpki.UntrustedCACert)
	for client, err := range clientErrors(t, f, conn) {
		require.Error(t, err, "%s with a CA that did not sign the broker's certificate", client)
		msg := err.Error()
		t.Logf("%s: %s", client, msg)
		require.ErrorIs(t, err, kafka.ErrTLSHandshake, "%s: %s", client, msg)
		require.True(t, kafka.Refused(err), "%s: kafka.Refused(%s)", client, msg)
		require.Contains(t, msg, "kafka broker "+c.SASLSSL[0]+": TLS handshake: ", client)
		require.Contains(t, msg, "x509: certificate signed by unknown authority", client)
	}
}

// testWrongPasswordBacksOff runs a group member that cannot authenticate
// under kafka.SuperviseFunc for a fixed window and counts its attempts. A
// tight restart loop makes hundreds in that window; with the backoff
// (100ms doubling, at most maxBackoff) there are at most a handful, and
// each retry is logged with a larger retry_in than the one before. Only
// upper bounds are checked: a slow machine makes fewer attempts, never
// more.
func testWrongPasswordBacksOff(t *testing.T, f SecurityFactory, c SecureCluster) {
	wrong := filepath.Join(t.TempDir(), "wrong-password")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	conn := c.SASL(kafka.SASLScramSHA512)
	conn.SASL.PasswordFile = wrong
	gc := conn.GroupConfig("sec-backoff-"+uniqueName(t), "sec-backoff")
	gc.SessionTimeout = testSessionTimeout

	const window, maxBackoff = 3 * time.Second, 800 * time.Millisecond
	logs := &captureHandler{}
	var attempts atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	kafka.SuperviseFunc(ctx, func(ctx context.Context) error {
		attempts.Add(1)
		g, err := f.NewGroup(gc)
		if err != nil {
			return err
		}
		defer func() { _ = g.Close() }()
		return g.Run(ctx, HandlerNoop())
	}, maxBackoff, slog.New(logs))

	n := attempts.Load()
	t.Logf("%d attempts in %v", n, window)
	// 100+200+400+800+800 ms of waits fill the 3 s window after 5
	// attempts; 7 leaves room for attempts that fail instantly.
	require.LessOrEqual(t, n, int32(7), "attempts in %v: a restart loop without backoff", window)
	retries := logs.retries()
	if c.ReportsAuthFailures {
		require.NotEmpty(t, retries, "no failure was logged")
	}
	for i, r := range retries {
		if c.ReportsAuthFailures {
			require.Contains(t, r.err, c.SASLSSL[0], "logged error %d", i)
			require.Contains(t, r.err, "authentication failed", "logged error %d", i)
		}
		want := 100 * time.Millisecond
		if i > 0 {
			want = min(2*retries[i-1].retryIn, maxBackoff)
		}
		require.Equal(t, want, r.retryIn, "retry %d: the backoff does not double", i)
	}
}

// captureHandler records the err and retry_in attributes of the log
// records of kafka.SuperviseFunc.
type captureHandler struct {
	mu      sync.Mutex
	entries []logEntry
}

type logEntry struct {
	err     string
	retryIn time.Duration
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	var e logEntry
	found := false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "err":
			e.err = a.Value.String()
		case "retry_in":
			e.retryIn, found = a.Value.Duration(), true
		}
		return true
	})
	if found {
		h.mu.Lock()
		h.entries = append(h.entries, e)
		h.mu.Unlock()
	}
	return nil
}

func (h *captureHandler) retries() []logEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logEntry(nil), h.entries...)
}
