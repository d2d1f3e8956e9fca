package allinone

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// TestEmbeddedBrokerRequiresTheGeneratedCredentials starts the pipeline
// on its embedded broker: a password is generated into a 0600 file, a
// client without it can neither write a forged event to the raw topic nor
// read it, the pipeline itself (whose every client authenticates) still
// stores what the webhook receives, and a restart keeps the password.
func TestEmbeddedBrokerRequiresTheGeneratedCredentials(t *testing.T) {
	if os.Getenv(kafkatest.BrokersEnv) != "" {
		t.Skip("external Kafka: no embedded broker")
	}
	cfg := testConfig(t)
	p := startPipeline(t, cfg)

	path := filepath.Join(cfg.DataDir, CredentialsFile)
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), info.Mode().Perm())
	creds, err := LoadKafkaCredentials(path)
	require.NoError(t, err)
	require.Equal(t, creds, p.KafkaSASL())
	require.Equal(t, kafka.SASLScramSHA256, creds.Mechanism)
	require.GreaterOrEqual(t, len(creds.Password), 40, "a random password of 256 bits")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	forger, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: p.Brokers()})
	require.NoError(t, err)
	defer forger.Close()
	forged := `{"kind":"Event","auditID":"forged-1","stage":"ResponseComplete","verb":"delete","user":{"username":"nobody"}}`
	require.Error(t, forger.Produce(ctx, kafka.Record{Topic: cfg.Topics.Raw, Key: []byte("forged-1"), Value: []byte(forged),
		Headers: []kafka.Header{{Key: "auditpipe.cluster", Value: []byte("victim")}}}), "a write without credentials")

	reader, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: p.Brokers()})
	require.NoError(t, err)
	defer reader.Close()
	_, err = reader.Bounds(ctx, cfg.Topics.Raw)
	require.Error(t, err, "a read without credentials")

	// The pipeline works: events through the webhook reach the store.
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:40]
	audittest.Shift(evs, time.Now().Add(-time.Minute))
	backend := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/auth-1", audittest.ModeBlocking)
	require.True(t, backend.ProcessEvents(evs...))
	authed, err := kafkago.NewReader(kafka.ReaderConfig{Brokers: p.Brokers(), SASL: creds})
	require.NoError(t, err)
	defer authed.Close()
	bounds, err := authed.Bounds(ctx, cfg.Topics.Raw)
	require.NoError(t, err)
	total := int64(0)
	for _, b := range bounds {
		total += b.End - b.Start
	}
	require.Equal(t, int64(len(evs)), total, "the raw topic holds the webhook's events and not the forged one")
	require.NotEmpty(t, waitForEvents(t, p.APIURL(), "auth-1", 1).Events)
	require.Empty(t, queryEvents(t, p.APIURL(), map[string][]string{"cluster": {"victim"}}).Events)

	// A restart on the same data directory keeps the password.
	require.NoError(t, p.Shutdown(context.Background()))
	p2 := startPipeline(t, cfg)
	require.Equal(t, creds, p2.KafkaSASL())
	require.NotEmpty(t, waitForEvents(t, p2.APIURL(), "auth-1", 1).Events)
}
