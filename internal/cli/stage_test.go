package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type blockingApp struct{}

func (blockingApp) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (blockingApp) Close() error { return nil }

// TestStageRunServesMetricsAndHealth runs a stage as its main does: the
// metrics server answers with auditpipe_build_info, /readyz follows the
// app's checks, and cancellation (SIGTERM) stops it cleanly.
func TestStageRunServesMetricsAndHealth(t *testing.T) {
	var checkErr error = io.EOF // not ready until the test says so
	var mu sync.Mutex
	s := testStage(func(_ *testConfig, env Env) App {
		env.Health.Add("app", func(context.Context) error { mu.Lock(); defer mu.Unlock(); return checkErr })
		return blockingApp{}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, []string{"--metrics-listen", "127.0.0.1:0", "--log-format", "text"}, io.Discard, &stderr)
	}()
	addrRE := regexp.MustCompile(`serving metrics and health.* addr=(\S+)`)
	var addr string
	require.Eventually(t, func() bool {
		m := addrRE.FindStringSubmatch(stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, stderr.String())

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	require.Eventually(t, func() bool { _, body := get("/readyz"); return regexp.MustCompile(`"app"`).MatchString(body) }, 10*time.Second, 10*time.Millisecond)
	code, body := get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	mu.Lock()
	checkErr = nil
	mu.Unlock()
	code, body = get("/readyz")
	require.Equal(t, http.StatusOK, code, body)

	_, metrics := get("/metrics")
	require.Regexp(t, `auditpipe_build_info\{component="teststage",goversion="go[^"]+",revision="[^"]+",version="[^"]+"\} 1`, metrics)
	require.Equal(t, 1, strings.Count(firstLine(stderr.String()), "component="), "each log key once: %s", stderr.String())

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop on cancellation")
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
