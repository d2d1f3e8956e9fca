package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
)

// requirePrivate walks dir and checks that every directory is 0700 and
// every regular file 0600.
func requirePrivate(t *testing.T, dir string) (files int) {
	t.Helper()
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		switch {
		case d.IsDir():
			require.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), "directory %s", path)
		case info.Mode().IsRegular():
			require.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), "file %s", path)
			files++
		}
		return nil
	}))
	return files
}

// TestRunKeepsTheDataDirectoryPrivate runs `auditpipe run` with the demo
// events on a data directory that already exists with open modes, waits
// until events are stored, stops it, and walks the data directory: the
// broker's log, the spool, the store, the policy and the broker password
// are all 0600 in 0700 directories. On the way, the groups command
// reaches the running broker with the generated credentials only.
func TestRunKeepsTheDataDirectoryPrivate(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(dataDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dataDir, "notes.txt"), []byte("left by someone"), 0o644))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"run", "--data-dir", dataDir, "--kafka-listen", "127.0.0.1:0", "--webhook-listen", "127.0.0.1:0",
			"--api-listen", "127.0.0.1:0", "--log-level", "error", "--demo", audittest.Dir(t)}, pw, io.Discard)
		pw.Close()
	}()
	var api, brokers string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "api:"); ok {
			api = strings.TrimSuffix(strings.Fields(rest)[0], "/api/v1/events")
		}
		if rest, ok := strings.CutPrefix(line, "kafka:"); ok {
			brokers = strings.Fields(rest)[0]
		}
		if strings.HasPrefix(line, "Demo: posted") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	require.NotEmpty(t, api, "the run command printed the API URL")

	require.Eventually(t, func() bool {
		resp, err := http.Get(api + "/api/v1/events?cluster=demo&limit=1")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var out struct{ Total int }
		return json.NewDecoder(resp.Body).Decode(&out) == nil && out.Total > 0
	}, 2*time.Minute, 100*time.Millisecond, "demo events reach the store")

	// The Kafka tools of the same binary reach the embedded broker with
	// the credentials file, and not without it.
	creds := filepath.Join(dataDir, "kafka-credentials.json")
	var out bytes.Buffer
	gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer gcancel()
	require.NoError(t, run(gctx, []string{"groups", "describe", "--brokers", brokers, "--group", "auditpipe-processor", "--topic", "audit.raw", "--kafka-credentials", creds}, &out, io.Discard))
	require.Contains(t, out.String(), "auditpipe-processor")
	short, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	require.Error(t, run(short, []string{"groups", "describe", "--brokers", brokers, "--group", "auditpipe-processor", "--topic", "audit.raw", "--kafka-credentials", ""}, io.Discard, io.Discard))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("run did not stop")
	}
	files := requirePrivate(t, dataDir)
	for _, sub := range []string{"kafka", "producer/spool", "store", "policies"} {
		entries, err := os.ReadDir(filepath.Join(dataDir, sub))
		require.NoError(t, err, sub)
		require.NotEmpty(t, entries, "%s holds files, so its modes were checked", sub)
	}
	require.Greater(t, files, 5)
}
