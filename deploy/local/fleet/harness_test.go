package fleet

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// repoRoot is the repository root, from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// buildStages builds the three stage binaries into dir with one go build
// (the workspace spans their modules) and returns their paths by name.
func buildStages(t *testing.T, dir string) map[string]string {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"./producer/cmd/producer", "./processor/cmd/processor", "./consumer/cmd/consumer")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build the stage binaries: %s", out)
	bins := map[string]string{}
	for _, name := range []string{"producer", "processor", "consumer"} {
		bins[name] = filepath.Join(dir, name)
		_, err := os.Stat(bins[name])
		require.NoError(t, err, "built binary")
	}
	return bins
}

// ports hands out loopback addresses that nothing listens on, each once. A
// process keeps its address over restarts, as a pod behind a Service
// would, so the ports are below Linux's ephemeral range (32768-60999):
// there, a client socket of the test could take one while its process is
// down.
type ports map[int]bool

func (p ports) free(t *testing.T) string {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if p[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		p[port] = true
		return addr
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return ""
}

// stageProc is one stage process: how to start it, and the running one.
type stageProc struct {
	name    string
	bin     string
	args    []string
	env     []string // added to the test's environment
	logPath string
	// readyURL answers 200 once the process is ready (its /readyz).
	readyURL string
	// webhookURL is a producer's webhook base URL.
	webhookURL string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	starts int
}

// start runs the process and waits until readyURL answers 200. Whatever
// runs when the test ends is killed; the kernel kills it too if the test
// binary itself dies (go test -timeout).
func (p *stageProc) start(t *testing.T) {
	t.Helper()
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	fmt.Fprintf(logFile, "=== fleet test: start %d of %s at %s\n", p.starts+1, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start(), "start %s", p.name)
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.err = cmd, done, nil
	p.starts++
	first := p.starts == 1
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	if first {
		t.Cleanup(func() { p.kill() })
	}
	deadline := time.Now().Add(2 * time.Minute)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-done:
			t.Fatalf("%s exited before it was ready (%v); log:\n%s", p.name, p.exitErr(), tail(p.logPath, 40))
		default:
		}
		if resp, err := client.Get(p.readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after 2 minutes; log:\n%s", p.name, p.readyURL, tail(p.logPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *stageProc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// kill9 kills the process without warning, as a crash or the OOM killer
// would, and waits until it is gone.
func (p *stageProc) kill9(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
		t.Fatalf("%s had exited before the kill (%v); log:\n%s", p.name, p.exitErr(), tail(p.logPath, 40))
	default:
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL), "kill -9 %s", p.name)
	<-done
}

// kill is the cleanup: SIGKILL whatever still runs.
func (p *stageProc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Kill()
		<-done
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// problems returns the last n lines of a log that look like errors or
// warnings, whatever the log format.
func problems(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, l := range bytes.Split(b, []byte("\n")) {
		s := string(l)
		if strings.Contains(s, "ERROR") || strings.Contains(s, "WARN") || strings.Contains(s, "=== fleet test") {
			lines = append(lines, s)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// writeFile writes a config file of the test.
func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}
