package main

import (
	"context"
	"io"
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

// secureRun is `processor run --config` over TLS and SCRAM, its kafka:
// block (caFile, passwordFile) from the YAML file.
type secureRun struct {
	*clitest.Run
	config string
}

func startSecure(t *testing.T, conn kafka.Connection, topics schemas.Topics, group string) *secureRun {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
	config := filepath.Join(dir, "processor.yaml")
	require.NoError(t, os.WriteFile(config, []byte(kafkatest.KafkaYAML(conn)+
		"group: "+group+"\npolicy: "+policy+"\nnoDetections: true\nreloadInterval: -1s\n"+
		"topics:\n  raw: "+topics.Raw+"\n  events: "+topics.Events+"\n  dlq: "+topics.DLQ+"\n  alerts: \"\"\n"+
		"metrics:\n  listen: 127.0.0.1:0\nlog:\n  format: text\n"), 0o600))
	return &secureRun{config: config, Run: clitest.Start(t, program(), "run", "--config", config)}
}

// TestRunOverTLSAndSCRAM: the processor, configured by a YAML file with
// kafka.tls.caFile and kafka.sasl.passwordFile, reads the raw topic and
// writes the events topic of a broker that accepts only TLS with SCRAM.
func TestRunOverTLSAndSCRAM(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topics := schemas.Topics{Raw: "raw-" + suffix, Events: "events-" + suffix, DLQ: "dlq-" + suffix}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	admin, err := saramakafka.NewAdminWithConfig(conn.AdminConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	for _, topic := range []string{topics.Raw, topics.Events, topics.DLQ} {
		require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}))
	}

	r := startSecure(t, conn, topics, "tls-"+suffix)
	require.Eventually(t, func() bool { return r.Ready() == http.StatusOK }, 30*time.Second, 50*time.Millisecond,
		"ready once the group joined over TLS+SCRAM: %s", r.Stderr.String())

	in, err := saramakafka.NewProducer(conn.ProducerConfig())
	require.NoError(t, err)
	t.Cleanup(func() { _ = in.Close() })
	ev, err := os.ReadFile("../../../testdata/public-audit/falco/create_clusterrole.json")
	require.NoError(t, err)
	require.NoError(t, in.Produce(ctx, kafka.Record{Topic: topics.Raw, Key: []byte("k"), Value: ev,
		Headers: []kafka.Header{{Key: schemas.HeaderCluster, Value: []byte("c1")}}}))

	got := make(chan kafka.Record, 10)
	g, err := saramakafka.NewGroup(conn.GroupConfig("check-"+suffix, topics.Events))
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
		require.Contains(t, string(rec.Value), "clusterroles", "the processed event")
	case <-ctx.Done():
		t.Fatalf("no event on %s: %s", topics.Events, r.Stderr.String())
	}
	gstop()
	require.NoError(t, <-gdone)

	// replay reads the same config file and connects the same way.
	var out strings.Builder
	require.NoError(t, program().Run(ctx, []string{"replay", "--config", r.config, "--topic", topics.Raw, "--dry-run"}, &out, io.Discard))
	require.Contains(t, out.String(), "read 1 records", out.String())
	r.Stop(t)
}

// TestRunWrongPassword: with a wrong password in kafka.sasl.passwordFile
// the processor keeps running (no crash loop: its Kafka sessions back
// off), stays unready, and logs an error naming the broker.
func TestRunWrongPassword(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	wrong := filepath.Join(t.TempDir(), "wrong-password")
	require.NoError(t, os.WriteFile(wrong, []byte("not-the-password\n"), 0o600))
	conn.SASL.PasswordFile = wrong
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topics := schemas.Topics{Raw: "raw-" + suffix, Events: "events-" + suffix, DLQ: "dlq-" + suffix}

	r := startSecure(t, conn, topics, "wrong-"+suffix)
	require.Eventually(t, func() bool { return strings.Contains(r.Stderr.String(), c.SASLSSL[0]) }, 20*time.Second, 50*time.Millisecond,
		"no error names the broker: %s", r.Stderr.String())
	require.Contains(t, r.Stderr.String(), "kafka not reachable; retrying")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		require.NotEqual(t, http.StatusOK, r.Ready(), "ready with a wrong password")
		select {
		case err := <-r.Done():
			t.Fatalf("processor stopped: %v\n%s", err, r.Stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("log:\n%s", r.Stderr.String())
	if c.ReportsAuthFailures {
		// Kafka words it "Authentication failed"; our own wrapping
		// says "authentication failed".
		require.Contains(t, strings.ToLower(r.Stderr.String()), "authentication failed")
	}
	r.Stop(t)
}

// TestValidateKafkaFiles: validate reads the kafka: block's files and
// names the key and the file that fails.
func TestValidateKafkaFiles(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing-ca.crt")
	config := filepath.Join(dir, "processor.yaml")
	require.NoError(t, os.WriteFile(config, []byte(kafkatest.KafkaYAML(kafka.Connection{Brokers: []string{"k:9093"},
		TLS: kafka.TLS{Enabled: true, CAFile: missing}})+"policy: ../../policies/tke-default.yaml\n"), 0o600))
	err := program().Run(t.Context(), []string{"validate", "--config", config}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "kafka.tls.caFile "+missing)

	password := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(password, []byte("p\n"), 0o600))
	err = program().Run(t.Context(), []string{"validate", "--config", config, "--kafka-tls-ca-file", "", "--kafka-sasl-mechanism", "SCRAM-SHA-1",
		"--kafka-sasl-username", "u", "--kafka-sasl-password-file", password}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "kafka.sasl")
	require.ErrorContains(t, err, "SCRAM-SHA-1")
	require.NoError(t, program().Run(t.Context(), []string{"validate", "--config", config, "--kafka-tls-ca-file", "",
		"--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "u", "--kafka-sasl-password-file", password}, io.Discard, io.Discard),
		"the flags override the file's caFile")
}
