package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
)

// TestValidate: validate checks the config, the fleet registry and the
// secret files, creates nothing (no store), and flags override the file.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	require.NoError(t, os.Mkdir(storeDir, 0o700))
	store := filepath.Join(storeDir, "events.db")
	keyFile := filepath.Join(dir, "cls-key")
	require.NoError(t, os.WriteFile(keyFile, []byte("the-key\n"), 0o600))
	fleetFile := filepath.Join(dir, "fleet.yaml")
	require.NoError(t, os.WriteFile(fleetFile, []byte("clusters:\n  prod-1:\n    cls: {topicID: t1}\n"), 0o600))
	config := filepath.Join(dir, "consumer.yaml")
	require.NoError(t, os.WriteFile(config, []byte(`kafka:
  brokers: [kafka-0:9093]
fleet: `+fleetFile+`
local:
  path: `+store+`
cls:
  mode: cls
  endpoint: ap-guangzhou.cls.tencentcs.com
  secretID: ${CONSUMER_TEST_SECRET_ID}
  secretKeyFile: `+keyFile+`
`), 0o600))
	t.Setenv("CONSUMER_TEST_SECRET_ID", "AKIDtest")
	var out, errOut bytes.Buffer
	require.NoError(t, program().Run(context.Background(), []string{"validate", "--config", config}, &out, &errOut))
	require.Equal(t, "consumer: config is valid\n", out.String())
	_, err := os.Stat(store)
	require.True(t, os.IsNotExist(err), "validate created the store: %v", err)

	cfg, err := stage.Load("validate", []string{"--config", config, "--group", "from-flag"}, &out)
	require.NoError(t, err)
	require.Equal(t, "the-key", cfg.CLS.SecretKey, "the secret comes from the file")
	require.Equal(t, "AKIDtest", cfg.CLS.SecretID, "the secret comes from the environment")
	require.Equal(t, "from-flag", cfg.Group, "a flag overrides the file")
	require.Equal(t, app.CLSCloud, cfg.CLS.Mode)

	badFleet := filepath.Join(dir, "bad-fleet.yaml")
	require.NoError(t, os.WriteFile(badFleet, []byte("clusters:\n  Not_Valid!:\n    cls: {topicID: t1}\n"), 0o600))
	require.ErrorContains(t, program().Run(context.Background(), []string{"validate", "--config", config, "--fleet", badFleet}, &out, &errOut), "Not_Valid!")
	require.ErrorContains(t, program().Run(context.Background(), []string{"validate", "--config", config, "--store", filepath.Join(dir, "missing", "events.db")}, &out, &errOut), "local.path")
	require.NoError(t, os.Remove(keyFile))
	require.ErrorContains(t, program().Run(context.Background(), []string{"validate", "--config", config}, &out, &errOut), "cls.secretKeyFile")
}
