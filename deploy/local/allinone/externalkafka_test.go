package allinone

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// TestExternalKafkaOverTLSAndSCRAM runs the pipeline on an external
// cluster that accepts only TLS with SCRAM, kafka.tls and kafka.sasl
// naming a CA file and a password file: every stage's clients connect
// with them, and events from the webhook reach the store.
func TestExternalKafkaOverTLSAndSCRAM(t *testing.T) {
	c := kafkatest.SecureBrokers(t)
	conn := c.SASL(kafka.SASLScramSHA512)
	cfg := testConfig(t)
	cfg.Kafka.Brokers, cfg.Kafka.TLS, cfg.Kafka.SASL = conn.Brokers, conn.TLS, conn.SASL
	suffix := "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg.Topics.Raw += suffix
	cfg.Topics.Events += suffix
	cfg.Topics.DLQ += suffix
	cfg.Topics.Alerts += suffix
	require.NoError(t, Check(cfg))
	p := startPipeline(t, cfg)
	require.False(t, p.KafkaSASL().Enabled(), "no embedded broker's user with an external cluster")
	_, err := os.Stat(filepath.Join(cfg.DataDir, CredentialsFile))
	require.ErrorIs(t, err, os.ErrNotExist)

	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:20]
	audittest.Shift(evs, time.Now().Add(-time.Minute))
	backend := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/tls-1", audittest.ModeBlocking)
	require.True(t, backend.ProcessEvents(evs...))
	require.NotEmpty(t, waitForEvents(t, p.APIURL(), "tls-1", 1).Events)
}

// TestExternalKafkaConfig: kafka.tls and kafka.sasl are checked (files
// read, named with their keys) and are refused without kafka.brokers.
func TestExternalKafkaConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ca.crt")
	cfg := testConfig(t)
	cfg.Kafka.Brokers = nil
	cfg.Kafka.TLS = kafka.TLS{Enabled: true}
	require.ErrorContains(t, cfg.Validate(), "only with kafka.brokers")

	cfg.Kafka.Brokers = []string{"kafka-0:9093"}
	cfg.Kafka.TLS.CAFile = missing
	err := Check(cfg)
	require.ErrorContains(t, err, "kafka.tls.caFile "+missing)

	cfg.Kafka.TLS.CAFile = ""
	cfg.Kafka.SASL = kafka.SASL{Mechanism: "SCRAM-SHA-1", Username: "u", Password: "p"}
	require.ErrorContains(t, Check(cfg), "SCRAM-SHA-1")
}
