package main

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/internal/cli/clitest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
)

// secureRun is `consumer run --config` into a local store, its kafka:
// block (tls.caFile, sasl.passwordFile) from the YAML file.
type secureRun struct {
	*clitest.Run
	config string
}

// startSecure runs the consumer with a SQLite store at store: the tests
// read it back through a connection of their own while it runs.
func startSecure(t *testing.T, conn kafka.Connection, topic, group, store string) *secureRun {
	t.Helper()
	config := filepath.Join(t.TempDir(), "consumer.yaml")
	require.NoError(t, os.WriteFile(config, []byte(kafkatest.KafkaYAML(conn)+"group: "+group+"\ntopic: "+topic+"\n"+
		"metrics:\n  listen: 127.0.0.1:0\nlog:\n  format: text\n"), 0o600))
	return &secureRun{config: config, Run: clitest.Start(t, program(), "run", "--config", config, "--sink", "local", "--store", store, "--store-engine", "sqlite",
		"--api-listen", "127.0.0.1:0", "--session-timeout", "6s")}
}

// TestRunOverTLSAndSCRAM: the consumer, configured by a YAML file with
// kafka.tls.caFile and kafka.sasl.passwordFile, stores the events of a
// broker that accepts only TLS with SCRAM in its local store.
func TestRunOverTLSAndSCRAM(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topic := "events-" + suffix
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admin, err := saramakafka.NewAdminWithConfig(conn.AdminConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}))
	p, err := saramakafka.NewProducer(conn.ProducerConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	require.NoError(t, p.Produce(ctx, kafka.Record{Topic: topic, Key: []byte("c1"), Value: eventgen.Event("c1", "tls-event-1", 200, time.Now())}))

	store := filepath.Join(t.TempDir(), "events.db")
	r := startSecure(t, conn, topic, "tls-"+suffix, store)
	require.Eventually(t, func() bool { return r.Ready() == http.StatusOK }, 30*time.Second, 50*time.Millisecond,
		"ready once the group joined over TLS+SCRAM: %s", r.Stderr.String())
	db, err := sql.Open("sqlite", "file:"+store+"?mode=ro")
	require.NoError(t, err)
	defer db.Close()
	require.Eventually(t, func() bool {
		var n int
		return db.QueryRow("SELECT count(*) FROM events WHERE audit_id = 'tls-event-1'").Scan(&n) == nil && n == 1
	}, 30*time.Second, 50*time.Millisecond, "event not stored: %s", r.Stderr.String())

	// The group tools read the same config file and connect the same way.
	var out strings.Builder
	require.NoError(t, program().Run(ctx, []string{"groups", "list", "--config", r.config}, &out, io.Discard))
	require.Contains(t, out.String(), "tls-"+suffix)
	r.Stop(t)
}

// TestRunWrongPassword: with a wrong password in kafka.sasl.passwordFile
// the consumer keeps running unready (no crash loop) and logs an error
// naming the broker.
func TestRunWrongPassword(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	wrong := filepath.Join(t.TempDir(), "wrong-password")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	conn.SASL.PasswordFile = wrong
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)

	r := startSecure(t, conn, "events-"+suffix, "wrong-"+suffix, filepath.Join(t.TempDir(), "events.db"))
	require.Eventually(t, func() bool { return strings.Contains(r.Stderr.String(), c.SASLSSL[0]) }, 20*time.Second, 50*time.Millisecond,
		"no error names the broker: %s", r.Stderr.String())
	require.Contains(t, r.Stderr.String(), "kafka not reachable; retrying")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		require.NotEqual(t, http.StatusOK, r.Ready(), "ready with a wrong password")
		select {
		case err := <-r.Done():
			t.Fatalf("consumer stopped: %v\n%s", err, r.Stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if c.ReportsAuthFailures {
		require.Contains(t, strings.ToLower(r.Stderr.String()), "authentication failed")
	}
	r.Stop(t)
}
