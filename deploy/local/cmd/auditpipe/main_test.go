package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	consumerapp "github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/deploy/local/allinone"
)

func TestRunRefusesUnknownConfigKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auditpipe.yaml")
	require.NoError(t, os.WriteFile(path, []byte("dataDir: /tmp/x\nwebhook:\n  listen: 127.0.0.1:0\n  maxBodyByte: 10\n"), 0o600))
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"run", "--config", path}, &out, &errOut)
	require.ErrorContains(t, err, `unknown field "webhook.maxBodyByte"`)
	require.ErrorContains(t, err, path)
}

func TestRunRefusesInvalidConfigValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auditpipe.yaml")
	require.NoError(t, os.WriteFile(path, []byte("kafka:\n  partitions: 0\n"), 0o600))
	err := run(context.Background(), []string{"run", "--config", path, "--data-dir", t.TempDir()}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "kafka.partitions")
}

// TestMemoryLimitKeyAndFlag: memoryLimitBytes is a config key and a flag
// of run, listed in its help, and a bad value stops run before anything
// starts.
func TestMemoryLimitKeyAndFlag(t *testing.T) {
	var out bytes.Buffer
	require.ErrorIs(t, run(context.Background(), []string{"run", "--help"}, &out, &bytes.Buffer{}), flag.ErrHelp)
	require.Contains(t, out.String(), "-memory-limit-bytes")
	require.Contains(t, out.String(), "memoryLimitBytes")

	dir := t.TempDir()
	path := filepath.Join(dir, "auditpipe.yaml")
	require.NoError(t, os.WriteFile(path, []byte("memoryLimitBytes: 1000\n"), 0o600))
	dataDir := filepath.Join(dir, "data")
	err := run(context.Background(), []string{"run", "--config", path, "--data-dir", dataDir}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "memoryLimitBytes: 1000 is below")
	// The flag wins over the file.
	err = run(context.Background(), []string{"validate", "--config", path, "--data-dir", dataDir, "--memory-limit-bytes", "0"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.NoError(t, err)
	err = run(context.Background(), []string{"validate", "--data-dir", dataDir, "--memory-limit-bytes", "1000"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "memoryLimitBytes: 1000 is below")
	_, err = os.Stat(dataDir)
	require.True(t, os.IsNotExist(err), "the data directory was created: %v", err)
}

// TestStoreEngineKeyAndFlag: store.engine is a config key and a flag of
// run, listed in its help with its default, vlogs (decision 0026); an
// unknown engine stops validate and names the key.
func TestStoreEngineKeyAndFlag(t *testing.T) {
	var out bytes.Buffer
	require.ErrorIs(t, run(context.Background(), []string{"run", "--help"}, &out, &bytes.Buffer{}), flag.ErrHelp)
	require.Contains(t, out.String(), "-store-engine")
	require.Contains(t, out.String(), `<data-dir>/store/events.db) (default "vlogs")`)

	dir := t.TempDir()
	path := filepath.Join(dir, "auditpipe.yaml")
	require.NoError(t, os.WriteFile(path, []byte("store:\n  engine: rocksdb\n"), 0o600))
	dataDir := filepath.Join(dir, "data")
	err := run(context.Background(), []string{"validate", "--config", path, "--data-dir", dataDir}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, `store.engine: "rocksdb", want sqlite or vlogs`)
	// The flag wins over the file.
	require.NoError(t, run(context.Background(), []string{"validate", "--config", path, "--data-dir", dataDir, "--store-engine", "vlogs"}, &bytes.Buffer{}, &bytes.Buffer{}))
}

func TestHelpAndUnknownCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"help"}, &out, &errOut))
	require.Contains(t, out.String(), "auditpipe run")

	// Help is on stdout, for every command; nothing on stderr.
	for _, args := range [][]string{{"run", "--help"}, {"kubeconfig", "--help"}, {"replay", "--help"}, {"groups", "--help"},
		{"groups", "describe", "--help"}, {"events", "--help"}, {"search", "--help"}, {"alerts", "--help"}} {
		out.Reset()
		errOut.Reset()
		err := run(context.Background(), args, &out, &errOut)
		if err != nil {
			require.ErrorIs(t, err, flag.ErrHelp, "%q", args) // main exits 0
		}
		require.Contains(t, out.String(), "Usage", "%q", args)
		require.Empty(t, errOut.String(), "%q", args)
	}

	require.ErrorContains(t, run(context.Background(), []string{"frobnicate"}, &out, &errOut), `unknown command "frobnicate"`)
}

func TestKubeconfigCommand(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"kubeconfig", "--cluster", "prod-1", "--server", "https://audit.example:8443"}, &out, &bytes.Buffer{}))
	require.Contains(t, out.String(), "server: https://audit.example:8443/v1/audit/prod-1")
	require.ErrorContains(t, run(context.Background(), []string{"kubeconfig"}, &out, &bytes.Buffer{}), "--cluster is required")
}

// TestValidate: validate reads the policy and says what is wrong, and
// neither validate nor a run with a bad policy creates the data directory
// (the broker never starts).
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	bad := filepath.Join(dir, "bad-policy.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n"), 0o600))
	var out, errOut bytes.Buffer
	require.ErrorContains(t, run(context.Background(), []string{"validate", "--data-dir", dataDir, "--policy", bad}, &out, &errOut), "bad-policy.yaml")
	require.ErrorContains(t, run(context.Background(), []string{"run", "--data-dir", dataDir, "--policy", bad}, &out, &errOut), "bad-policy.yaml")
	_, err := os.Stat(dataDir)
	require.True(t, os.IsNotExist(err), "the data directory was created: %v", err)

	require.ErrorContains(t, run(context.Background(), []string{"validate", "--data-dir", dataDir, "--rules", filepath.Join(dir, "missing-rules.yaml")}, &out, &errOut), "missing-rules.yaml")

	out.Reset()
	require.NoError(t, run(context.Background(), []string{"validate", "--data-dir", dataDir, "--policy", "../../../../processor/policies/tke-default.yaml"}, &out, &errOut))
	require.Equal(t, "auditpipe: config is valid\n", out.String())
	_, err = os.Stat(dataDir)
	require.True(t, os.IsNotExist(err), "validate created the data directory: %v", err)
}

// TestStoreMigrate: "auditpipe store migrate --data-dir D" copies D's
// SQLite store into D's VictoriaLogs store, where run (engine vlogs, the
// default) opens it. Before, validate and run refuse the default engine on
// D and say how to go on: keep sqlite, or that very command.
func TestStoreMigrate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	from := allinone.StorePath(dir, eventstore.EngineSQLite)
	require.NoError(t, os.MkdirAll(filepath.Dir(from), 0o700))
	src, err := consumerapp.OpenStore(consumerapp.LocalConfig{Engine: eventstore.EngineSQLite, Path: from}, eventstore.Options{})
	require.NoError(t, err)
	values := localtest.Values(localtest.Raw(localtest.All(t)))
	_, err = src.Write(ctx, values)
	require.NoError(t, err)
	require.NoError(t, src.Close())

	var out, errOut bytes.Buffer
	for _, command := range []string{"validate", "run"} {
		err := run(ctx, []string{command, "--data-dir", dir}, &out, &errOut)
		require.ErrorContains(t, err, from+" holds the SQLite store of an earlier version")
		require.ErrorContains(t, err, "--store-engine sqlite")
		require.ErrorContains(t, err, `"auditpipe store migrate --data-dir `+dir+`"`)
	}
	require.NoError(t, run(ctx, []string{"validate", "--data-dir", dir, "--store-engine", "sqlite"}, &out, &errOut))

	require.NoError(t, run(ctx, []string{"store", "migrate", "--data-dir", dir}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), fmt.Sprintf("migrated %d events", len(values)))

	dst, err := consumerapp.OpenStore(consumerapp.LocalConfig{Engine: eventstore.EngineVictoriaLogs, Path: allinone.StorePath(dir, eventstore.EngineVictoriaLogs)}, eventstore.Options{})
	require.NoError(t, err)
	defer dst.Close()
	res, err := dst.Query(ctx, eventstore.Query{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, len(values), res.Total)
	require.NoError(t, run(ctx, []string{"validate", "--data-dir", dir}, &out, &errOut), "migrated: the vlogs store is used")

	require.ErrorContains(t, run(ctx, []string{"store"}, &out, &errOut), `want "store migrate"`)
}
