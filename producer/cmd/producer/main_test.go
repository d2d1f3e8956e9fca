package main

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/producer/internal/testkit"
	"github.com/auditpipe/auditpipe/schemas"
)

func TestHelpExplains(t *testing.T) {
	var out, errb bytes.Buffer
	require.ErrorIs(t, run(context.Background(), []string{"--help"}, &out, &errb), errHelp())
	require.Contains(t, out.String(), "kubeconfig")
	require.Contains(t, out.String(), "validate")
	out.Reset()
	require.ErrorIs(t, run(context.Background(), []string{"run", "--help"}, &out, &errb), errHelp())
	for _, want := range []string{"webhook", "spool", "client certificate", "-audit-log-path", "-allow-insecure", "-metrics-listen", "-kafka-brokers"} {
		require.Contains(t, out.String(), want)
	}
	require.Empty(t, errb.String(), "help goes to stdout")
}

func TestRefusesPlainHTTPOnTheNetwork(t *testing.T) {
	err := run(context.Background(), []string{"--webhook-listen", "0.0.0.0:0", "--data-dir", t.TempDir()}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "refusing to accept audit events over plain HTTP")
}

func TestConfigUnknownKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("webhook:\n  listne: 1\n"), 0o600))
	err := run(context.Background(), []string{"--config", path}, io.Discard, io.Discard)
	require.ErrorContains(t, err, `unknown field "webhook.listne"`)
}

func TestKubeconfigAndDevCerts(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"dev-certs", "--dir", dir, "--cluster", "prod-1"}, &out, io.Discard))
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"kubeconfig", "--server", "https://127.0.0.1:8443", "--cluster", "prod-1", "--ca", filepath.Join(dir, "ca.crt"),
		"--client-cert", filepath.Join(dir, "client-prod-1.crt"), "--client-key", filepath.Join(dir, "client-prod-1.key")}, &out, io.Discard))
	for _, want := range []string{"server: https://127.0.0.1:8443/v1/audit/prod-1", "certificate-authority-data: ", "client-certificate-data: ", "client-key-data: "} {
		require.Contains(t, out.String(), want)
	}
	out.Reset()
	require.NoError(t, run(context.Background(), []string{"token-digest", "abc"}, &out, io.Discard))
	require.Equal(t, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n", out.String())
}

func errHelp() error { return flagErrHelp }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return program().Run(ctx, args, stdout, stderr)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the producer once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "producer-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "producer")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

type proc struct {
	cmd *exec.Cmd
	log *os.File
}

// startProducer runs the binary with the config file and waits until its
// admin endpoint answers.
func startProducer(t *testing.T, config, admin string) *proc {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(config), "producer.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(binary(t), "run", "--config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, log: logf}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("producer log:\n%s", tailOf(b, 4000))
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 20*time.Second, 20*time.Millisecond, "producer starts (log: %s)", logf.Name())
	return p
}

// kill sends SIGKILL: no shutdown code runs.
func (p *proc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.log.Close()
}

func tailOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func metric(t *testing.T, admin, name string) float64 {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func addr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)) }

func writeConfig(t *testing.T, dir string, body string) string {
	t.Helper()
	path := filepath.Join(dir, "producer.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func topicsYAML(tp schemas.Topics) string {
	return fmt.Sprintf("topics: {raw: %q, events: %q, dlq: %q}\n", tp.Raw, tp.Events, tp.DLQ)
}

// streamer posts batches of events and remembers the (auditID, stage)
// pairs of the batches answered 2xx: the acknowledged ones.
type streamer struct {
	url   string
	mu    sync.Mutex
	acked map[string]bool
	sent  int
	codes map[int]int
}

func (s *streamer) run(stop <-chan struct{}, worker int) {
	client := &http.Client{Timeout: 30 * time.Second}
	for b := 0; ; b++ {
		select {
		case <-stop:
			return
		default:
		}
		var items []string
		var keys []string
		for i := range 20 {
			id := fmt.Sprintf("w%d-b%d-e%d", worker, b, i)
			for _, stage := range []string{"RequestReceived", "ResponseComplete"} {
				items = append(items, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":%q,"verb":"get"}`, id, stage))
				keys = append(keys, id+"/"+stage)
			}
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
		resp, err := client.Post(s.url+"/v1/audit/c1?timeout=30s", "application/json", strings.NewReader(body))
		code := 0
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		s.mu.Lock()
		s.sent++
		s.codes[code]++
		if code == 200 {
			for _, k := range keys {
				s.acked[k] = true
			}
		}
		s.mu.Unlock()
		if code != 200 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestKillDuringStreamWithSpool kills the producer with SIGKILL while it
// is spooling a stream (Kafka is down), restarts it, brings Kafka back,
// and checks that every event that was answered 2xx — before the kill,
// while spooled, after the restart — reaches the raw topic, counted by
// (auditID, stage).
func TestKillDuringStreamWithSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a subprocess")
	}
	bin := binary(t)
	_ = bin
	port, brokerDir := testkit.FreePort(t), t.TempDir()
	broker := testkit.StartBrokerAt(t, port, brokerDir)
	t.Cleanup(func() { broker.Close() })
	brokers := broker.Addrs()
	topics := testkit.Topics(t, brokers)
	dir := t.TempDir()
	webhookAddr, admin := addr(t), addr(t)
	config := writeConfig(t, dir, fmt.Sprintf(`dataDir: %s
kafka: {brokers: [%q]}
%swebhook: {listen: %q}
metrics: {listen: %q}
spool: {kafkaTimeout: 1s, segmentBytes: 65536}
`, filepath.Join(dir, "data"), brokers[0], topicsYAML(topics), webhookAddr, admin))
	p := startProducer(t, config, admin)

	s := &streamer{url: "http://" + webhookAddr, acked: map[string]bool{}, codes: map[int]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(stop, w) }()
	}
	time.Sleep(700 * time.Millisecond)
	broker.Close() // from now on batches are spooled
	require.Eventually(t, func() bool { return metric(t, admin, "auditpipe_producer_spool_batches") >= 5 }, 20*time.Second, 20*time.Millisecond)
	p.kill() // mid-stream, with a non-empty spool
	p = startProducer(t, config, admin)
	require.Eventually(t, func() bool { return metric(t, admin, "auditpipe_producer_spool_written_batches_total") >= 3 }, 20*time.Second, 20*time.Millisecond,
		"after the restart, the stream goes on into the recovered spool")
	broker = testkit.StartBrokerAt(t, port, brokerDir)
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	require.Eventually(t, func() bool { return metric(t, admin, "auditpipe_producer_spool_batches") == 0 }, 40*time.Second, 50*time.Millisecond, "the spool drains")
	p.kill()

	s.mu.Lock() // the streamers are done; the lock only pleases the race detector
	acked := len(s.acked)
	t.Logf("batches sent %d, answers %v, events acknowledged %d", s.sent, s.codes, acked)
	defer s.mu.Unlock()
	seen := map[string]bool{}
	read := 0
	// Read until every acknowledged event was seen (or the timeout): the
	// topic also holds duplicates, so a record count proves nothing.
	got := testkit.Collect(t, brokers, topics.Raw, 40*time.Second, func(rs []kafka.Record) bool {
		for _, r := range rs[read:] {
			var ev struct{ AuditID, Stage string }
			if jsonUnmarshal(r.Value, &ev) == nil {
				seen[ev.AuditID+"/"+ev.Stage] = true
			}
		}
		read = len(rs)
		for k := range s.acked {
			if !seen[k] {
				return false
			}
		}
		return true
	})
	require.Equal(t, read, len(got))
	missing := 0
	for k := range s.acked {
		if !seen[k] {
			missing++
		}
	}
	require.Zero(t, missing, "acknowledged events missing from the raw topic (of %d acknowledged, %d records read)", acked, len(got))
	t.Logf("raw topic records %d for %d acknowledged events (duplicates from retries and the crash window: %d)", len(got), acked, len(got)-acked)
}

// TestKillDuringTail kills the producer with SIGKILL while an apiserver
// stand-in appends to the audit log (and rotates it by rename), twice —
// before and after the rotation — restarts it each time, and checks that
// every line written reaches the raw topic.
func TestKillDuringTail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a subprocess")
	}
	brokers := kafkatest.Brokers(t)
	topics := testkit.Topics(t, brokers)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log", "audit.log")
	require.NoError(t, os.MkdirAll(filepath.Dir(logPath), 0o755))
	admin := addr(t)
	config := writeConfig(t, dir, fmt.Sprintf(`dataDir: %s
kafka: {brokers: [%q]}
%swebhook: {listen: ""}
metrics: {listen: %q}
tail: {path: %q, cluster: c1, pollInterval: 20ms}
`, filepath.Join(dir, "data"), brokers[0], topicsYAML(topics), admin, logPath))
	p := startProducer(t, config, admin)

	const total = 6000
	rotatedPath := filepath.Join(filepath.Dir(logPath), "audit-2026-01-01T00-00-00.000.log")
	written := make(chan struct{})
	go func() {
		defer close(written)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		for i := range total {
			if i == total/2 {
				// Rotation by rename, as the apiserver's own rotation does.
				f.Close()
				if err := os.Rename(logPath, rotatedPath); err != nil {
					panic(err)
				}
				if f, err = os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
					panic(err)
				}
			}
			fmt.Fprintf(f, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"line-%d","stage":"ResponseComplete","verb":"list"}`+"\n", i)
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		f.Close()
	}()
	require.Eventually(t, func() bool { return metric(t, admin, `auditpipe_producer_tail_lines_total{outcome="accepted"}`) > 500 }, 20*time.Second, 10*time.Millisecond)
	p.kill()
	time.Sleep(200 * time.Millisecond)
	p = startProducer(t, config, admin)
	// A second kill after the rotation: the checkpoint may then be in the
	// renamed file, which the restarted producer must find and finish.
	require.Eventually(t, func() bool {
		_, err := os.Stat(rotatedPath)
		return err == nil && metric(t, admin, `auditpipe_producer_tail_lines_total{outcome="accepted"}`) > 200
	}, 20*time.Second, 5*time.Millisecond)
	p.kill()
	p = startProducer(t, config, admin)
	<-written
	got := testkit.Collect(t, brokers, topics.Raw, 40*time.Second, func(rs []kafka.Record) bool { return len(testkit.Distinct(rs)) >= total })
	p.kill()
	counts := testkit.Distinct(got)
	for i := range total {
		require.Positive(t, counts[fmt.Sprintf("line-%d", i)], "line %d", i)
	}
	t.Logf("%d lines, %d records (re-read after the kill: %d)", total, len(got), len(got)-total)
	require.LessOrEqual(t, len(got)-total, 2*500, "duplicates are limited to the unacknowledged window (one batch per kill)")
}
