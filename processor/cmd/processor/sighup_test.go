package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/cli/clitest"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// TestSIGHUPReloadsPolicy runs `processor run` in-process with file
// watching off, changes the policy and sends SIGHUP: a broken policy is
// refused (the reload counter says so), a valid one applied; SIGTERM's
// cancellation then stops the processor cleanly.
func TestSIGHUPReloadsPolicy(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	orig, err := os.ReadFile("../../policies/tke-default.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(policy, orig, 0o600))
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr clitest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- program().Run(ctx, []string{"run", "--kafka-brokers", strings.Join(brokers, ","), "--policy", policy,
			"--group", "sighup-" + suffix, "--reload-interval", "-1s", "--metrics-listen", "127.0.0.1:0", "--log-format", "text"}, io.Discard, &stderr)
	}()
	var addr string
	addrRE := regexp.MustCompile(`serving metrics and health.* addr=(\S+)`)
	require.Eventually(t, func() bool {
		m := addrRE.FindStringSubmatch(stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 20*time.Second, 10*time.Millisecond, stderr.String())
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// SIGHUP is subscribed to before the "started" check passes; sending
	// it earlier would kill the test binary.
	require.Eventually(t, func() bool {
		body := get("/readyz")
		return body != "" && !strings.Contains(body, `"started"`)
	}, 20*time.Second, 20*time.Millisecond)
	reloads := func(result string) string {
		m := regexp.MustCompile(`auditpipe_processor_policy_reloads_total\{result="` + result + `"\} (\d+)`).FindStringSubmatch(get("/metrics"))
		if m == nil {
			return "0"
		}
		return m[1]
	}

	require.NoError(t, os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n"), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return reloads("refused") == "1" }, 10*time.Second, 20*time.Millisecond, stderr.String())
	require.Contains(t, stderr.String(), "SIGHUP: reload failed")

	require.NoError(t, os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool { return reloads("applied") == "1" }, 10*time.Second, 20*time.Millisecond, stderr.String())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, stderr.String())
	case <-time.After(40 * time.Second):
		t.Fatal("processor did not stop")
	}
}
