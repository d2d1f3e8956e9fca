package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/cli/clitest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// secureRun is `producer run --config` in-process, its kafka: block
// (tls.caFile, sasl.passwordFile) from the YAML file.
type secureRun struct {
	*clitest.Run
	webhook string
}

func startSecure(t *testing.T, conn kafka.Connection, topics schemas.Topics) *secureRun {
	t.Helper()
	dir := t.TempDir()
	webhook := addr(t)
	config := writeConfig(t, dir, fmt.Sprintf("dataDir: %s\n%s%swebhook: {listen: %q}\nmetrics: {listen: %q}\nlog: {format: text}\n",
		filepath.Join(dir, "data"), kafkatest.KafkaYAML(conn), topicsYAML(topics), webhook, "127.0.0.1:0"))
	return &secureRun{webhook: webhook, Run: clitest.Start(t, program(), "run", "--config", config)}
}

func secureTopics() schemas.Topics {
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	return schemas.Topics{Raw: "raw-" + suffix, Events: "events-" + suffix, DLQ: "dlq-" + suffix}
}

// TestRunOverTLSAndSCRAM: the producer, configured by a YAML file with
// kafka.tls.caFile and kafka.sasl.passwordFile, writes a posted event to
// the raw topic of a broker that accepts only TLS with SCRAM.
func TestRunOverTLSAndSCRAM(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	topics := secureTopics()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admin, err := saramakafka.NewAdminWithConfig(conn.AdminConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topics.Raw, Partitions: 1, ReplicationFactor: 1}))

	r := startSecure(t, conn, topics)
	require.Eventually(t, func() bool { return r.Ready() == http.StatusOK }, 30*time.Second, 50*time.Millisecond,
		"ready once Kafka answered over TLS+SCRAM: %s", r.Stderr.String())
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"tls-event-1","stage":"ResponseComplete","verb":"get"}]}`
	resp, err := http.Post("http://"+r.webhook+"/v1/audit/c1", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	got := make(chan kafka.Record, 10)
	g, err := saramakafka.NewGroup(conn.GroupConfig("check-"+topics.Raw, topics.Raw))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	gctx, gstop := context.WithCancel(ctx)
	gdone := make(chan error, 1)
	go func() {
		gdone <- g.Run(gctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			for _, rec := range b.Records {
				got <- rec
			}
			return nil
		}))
	}()
	select {
	case rec := <-got:
		require.Contains(t, string(rec.Value), "tls-event-1")
	case <-ctx.Done():
		t.Fatalf("no record on %s: %s", topics.Raw, r.Stderr.String())
	}
	gstop()
	require.NoError(t, <-gdone)
	r.Stop(t)
}

// TestRunWrongPassword: with a wrong password in kafka.sasl.passwordFile
// the producer keeps running (its spool accepts), stays unready, and its
// readiness names the broker.
func TestRunWrongPassword(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	wrong := filepath.Join(t.TempDir(), "wrong-password")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	conn.SASL.PasswordFile = wrong

	r := startSecure(t, conn, secureTopics())
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		code, body := r.Readyz()
		require.NotEqual(t, http.StatusOK, code, "ready with a wrong password")
		require.Contains(t, body, c.SASLSSL[0], "readiness names the broker")
		select {
		case err := <-r.Done():
			t.Fatalf("producer stopped: %v\n%s", err, r.Stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, body := r.Readyz()
	t.Logf("readyz: %s", body)
	if c.ReportsAuthFailures {
		require.Contains(t, strings.ToLower(body), "authentication failed")
	}
	r.Stop(t)
}
