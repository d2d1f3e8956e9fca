package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/cli"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// TestReplayCommand: "processor replay" is registered; its help is on
// stdout and a bad flag is an error, not printed.
func TestReplayCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, program().Run(t.Context(), []string{"replay", "--help"}, &out, &errOut))
	require.Contains(t, out.String(), "Usage: processor replay [flags]")
	require.Contains(t, out.String(), "--target cls")
	require.Contains(t, out.String(), "-kafka-brokers")
	require.Empty(t, errOut.String())

	out.Reset()
	require.ErrorIs(t, program().Run(t.Context(), []string{"help"}, &out, &errOut), cli.ErrHelp)
	require.Regexp(t, `(?m)^\s+replay\s+re-process`, out.String(), "listed in the help")

	require.ErrorContains(t, program().Run(t.Context(), []string{"replay", "--frob"}, &out, &errOut), "frob")
	require.Empty(t, errOut.String())
}

// TestReplayUsesTheProcessorsConfig: --config is the processor's own YAML
// file; replay connects to Kafka as its kafka: section says, and the
// --kafka-* flags override it.
func TestReplayUsesTheProcessorsConfig(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := "replay-config." + strconv.FormatInt(time.Now().UnixNano(), 36)
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.EnsureTopics(t.Context(), kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}))

	dir := t.TempDir()
	good := filepath.Join(dir, "processor.yaml")
	require.NoError(t, os.WriteFile(good, []byte("kafka:\n  brokers: ["+strings.Join(brokers, ", ")+"]\npolicy: /etc/auditpipe/policy.yaml\n"), 0o600))
	var out bytes.Buffer
	require.NoError(t, program().Run(t.Context(), []string{"replay", "--config", good, "--topic", topic, "--dry-run"}, &out, io.Discard))
	require.Contains(t, out.String(), "Dry run of "+topic)

	// A broker nobody listens on in the file, the right one on the command line.
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("kafka:\n  brokers: [127.0.0.1:1]\n"), 0o600))
	out.Reset()
	require.NoError(t, program().Run(t.Context(), []string{"replay", "--config", bad, "--kafka-brokers", strings.Join(brokers, ","), "--topic", topic, "--dry-run"}, &out, io.Discard))
	require.Contains(t, out.String(), "Dry run of "+topic)

	typo := filepath.Join(dir, "typo.yaml")
	require.NoError(t, os.WriteFile(typo, []byte("kafka:\n  broker: [x:1]\n"), 0o600))
	require.ErrorContains(t, program().Run(t.Context(), []string{"replay", "--config", typo, "--dry-run"}, io.Discard, io.Discard), "kafka.broker")
}
