// Package clitest runs a stage's command program in-process for the
// stages' command tests: its log in a buffer, its /readyz, and a stop
// that waits for the drain.
package clitest

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/cli"
)

// Buffer is a strings.Builder safe for the program's logger and the
// test to use at once.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Run is a program started by Start.
type Run struct {
	// Stderr is the program's log.
	Stderr *Buffer
	// Metrics is the address its metrics and health server listens on.
	Metrics string
	name    string
	done    chan error
	cancel  context.CancelFunc
}

// metricsAddr finds the address in the line internal/cli logs when the
// metrics and health server listens (the test may have asked for port 0).
var metricsAddr = regexp.MustCompile(`serving metrics and health.* addr=(\S+)`)

// Start runs p with args (e.g. "run", "--config", file) until Stop, and
// returns once its metrics and health server listens.
func Start(t testing.TB, p *cli.Program, args ...string) *Run {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &Run{Stderr: &Buffer{}, name: p.Name, done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- p.Run(ctx, args, io.Discard, r.Stderr) }()
	require.Eventually(t, func() bool {
		m := metricsAddr.FindStringSubmatch(r.Stderr.String())
		if m != nil {
			r.Metrics = m[1]
		}
		return m != nil
	}, 20*time.Second, 10*time.Millisecond, r.Stderr.String())
	return r
}

// Ready is the /readyz status code (0 when unreachable).
func (r *Run) Ready() int {
	code, _ := r.Readyz()
	return code
}

// Readyz is the /readyz status code (0 when unreachable) and body.
func (r *Run) Readyz() (int, string) {
	resp, err := http.Get("http://" + r.Metrics + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Done receives the program's result when it stops on its own.
func (r *Run) Done() <-chan error { return r.done }

// Stop cancels the program and requires a clean drain within 40 s.
func (r *Run) Stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err, r.Stderr.String())
	case <-time.After(40 * time.Second):
		t.Fatalf("%s did not stop", r.name)
	}
}
