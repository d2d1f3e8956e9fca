package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/producer/webhook"
)

// TestSoak runs the `make run` topology (the auditpipe binary, embedded
// broker, local store) under a paced load of the default mix for a long
// time (issue #14: 2,000 events/s for 10 minutes) and checks that nothing
// acknowledged is lost and that the process's memory stays flat. It only
// runs with AUDITPIPE_LONG=1 (it takes the whole duration plus the drain,
// and two cores); AUDITPIPE_SOAK_RATE and AUDITPIPE_SOAK_DURATION change
// the load, AUDITPIPE_SOAK_STORE the store's engine (vlogs, the default, or sqlite),
// AUDITPIPE_SOAK_CPUPROFILE a file for the binary's CPU profile. It asserts
// no speed: a loaded machine only makes the backlog
// at the end longer.
//
//	AUDITPIPE_LONG=1 go test -run TestSoak -timeout 40m -v ./bench/
//
// No event is lost: every POST carries its events under the cluster id of
// its 10-second window and sender (one of 8), with auditIDs unique to the run,
// and is retried (like an apiserver) until the receiver acknowledged all
// of it. The store keeps one copy per identity (cluster, auditID, stage,
// content hash), and nothing else writes those clusters, so the stored
// count of a window equals the acknowledged count exactly when every
// acknowledged identity is stored.
//
// Flat memory: the process's RSS is sampled every 5 s; the largest sample
// of the last third of the run must stay below 1.5 times the largest of
// the first third (a leak proportional to the events stored fails it;
// the page cache of a growing store does not count in RSS).
func TestSoak(t *testing.T) {
	if os.Getenv("AUDITPIPE_LONG") != "1" {
		t.Skip("a 10-minute soak: set AUDITPIPE_LONG=1")
	}
	rate := envInt(t, "AUDITPIPE_SOAK_RATE", 2000)
	duration := 10 * time.Minute
	if v := os.Getenv("AUDITPIPE_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "AUDITPIPE_SOAK_DURATION")
		duration = d
	}
	const batchSize = 100
	const window = 10 * time.Second
	// senders clusters post at once, as several apiservers do (the webhook
	// limits the requests in progress per cluster).
	const senders = 8

	fixtures, err := FindFixtures(".")
	require.NoError(t, err)
	nonce := strconv.FormatInt(time.Now().Unix()%1e8, 16)
	gen, err := NewGenerator(fixtures, DefaultMix(), nonce)
	require.NoError(t, err)

	dir := t.TempDir()
	bin := filepath.Join(dir, "auditpipe")
	build := exec.Command("go", "build", "-o", bin, "../cmd/auditpipe")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build auditpipe: %s", out)

	hook, api, kafkaAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	engine := os.Getenv("AUDITPIPE_SOAK_STORE")
	if engine == "" {
		engine = "vlogs"
	}
	args := []string{"run", "--data-dir", filepath.Join(dir, "data"), "--store-engine", engine,
		"--webhook-listen", hook, "--api-listen", api, "--kafka-listen", kafkaAddr, "--log-level", "warn"}
	if p := os.Getenv("AUDITPIPE_SOAK_CPUPROFILE"); p != "" {
		// Written when the binary stops, at the test's cleanup.
		args = append(args, "--cpuprofile", p)
	}
	cmd := exec.Command(bin, args...)
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("auditpipe output:\n%s", logs.String())
		}
	})
	apiURL, hookURL := "http://"+api, "http://"+hook+webhook.PathPrefix
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	waitReady(t, client, apiURL, exited)

	// Memory samples, from the start of the load to the end of the drain.
	var rss []int64
	var rssMu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			if kb, ok := procStatusKB(cmd.Process.Pid, "VmRSS"); ok {
				rssMu.Lock()
				rss = append(rss, kb)
				rssMu.Unlock()
			}
			select {
			case <-tick.C:
			case <-stopSampling:
				return
			}
		}
	}()

	// The load: one POST of batchSize events every batchSize/rate seconds,
	// each on its own goroutine, like apiservers sending at their own pace.
	ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Minute)
	defer cancel()
	interval := time.Duration(float64(time.Second) * batchSize / float64(rate))
	posts := int(duration / interval)
	acked := make([]atomic.Int64, (int(duration/window)+1)*senders)
	var wg sync.WaitGroup
	var failed atomic.Value
	var retries atomic.Int64
	var firstRetry atomic.Value // the first error that made a POST retry
	var lateMu sync.Mutex
	var latencies []time.Duration
	// At most maxInFlight POSTs wait at once, as an apiserver's webhook
	// buffer is bounded too: a pipeline that cannot keep up slows the
	// offered rate down (reported as the achieved rate) rather than
	// growing the test's memory without bound.
	const maxInFlight = 256
	inFlight := make(chan struct{}, maxInFlight)
	start := time.Now()
	for i := range posts {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		// The load lasts duration, however many POSTs a slow machine
		// managed to start in it.
		if failed.Load() != nil || time.Since(start) > duration {
			break
		}
		inFlight <- struct{}{}
		w := int(time.Duration(i)*interval/window)*senders + i%senders
		body := eventList(gen.Next(batchSize))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inFlight }()
			cluster := soakCluster(nonce, w, senders)
			t0 := time.Now()
			var err error
			// Retried until acknowledged, like an apiserver's webhook
			// backend (with its backoff), until the test's deadline.
			for attempt := 0; ; attempt++ {
				if attempt > 0 {
					retries.Add(1)
					firstRetry.CompareAndSwap(nil, err.Error())
					select {
					case <-time.After(time.Duration(min(attempt, 5)) * time.Second):
					case <-ctx.Done():
					}
				}
				if err = post(ctx, client, hookURL+cluster, body, batchSize); err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				failed.CompareAndSwap(nil, err)
				return
			}
			acked[w].Add(batchSize)
			lateMu.Lock()
			latencies = append(latencies, time.Since(t0))
			lateMu.Unlock()
		}()
	}
	wg.Wait()
	loadTook := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("a POST was never acknowledged: %v", err)
	}

	// The drain: every acknowledged event becomes queryable.
	var total, stored int64
	for w := range acked {
		total += acked[w].Load()
	}
	drainStart := time.Now()
	deadline := drainStart.Add(10 * time.Minute)
	var missing []string
	for {
		stored, missing = 0, missing[:0]
		for w := range acked {
			want := acked[w].Load()
			if want == 0 {
				continue
			}
			cluster := soakCluster(nonce, w, senders)
			n := countStored(t, client, apiURL, cluster)
			stored += n
			if n != want {
				missing = append(missing, fmt.Sprintf("%s: %d of %d", cluster, n, want))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	drainTook := time.Since(drainStart)
	close(stopSampling)
	<-sampled
	hwm, _ := procStatusKB(cmd.Process.Pid, "VmHWM")

	slices.Sort(latencies)
	p := func(q float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]
	}
	rssMu.Lock()
	defer rssMu.Unlock()
	third := len(rss) / 3
	t.Logf("soak: %d events acknowledged in %s (offered %d/s, achieved %.0f/s; %d POST retries), %d stored; drain after the load took %s",
		total, loadTook.Round(time.Second), rate, float64(total)/loadTook.Seconds(), retries.Load(), stored, drainTook.Round(time.Second))
	if v, ok := firstRetry.Load().(string); ok {
		t.Logf("soak: first POST retried after: %s", v)
	}
	t.Logf("soak: POST latency p50 %s p99 %s max %s", p(0.5), p(0.99), p(1))
	t.Logf("soak: RSS samples (MiB, every 5 s): %s", mib(rss))
	t.Logf("soak: peak RSS (VmHWM) %d MiB", hwm/1024)
	logMetrics(t, client, apiURL+"/metrics")
	require.Empty(t, missing, "acknowledged events not stored after the drain")
	require.Equal(t, total, stored)
	require.GreaterOrEqual(t, third, 2, "too few RSS samples for a trend")
	first, last := slices.Max(rss[:third]), slices.Max(rss[len(rss)-third:])
	require.Less(t, float64(last), 1.5*float64(first),
		"RSS grew: the last third's max %d MiB against the first third's %d MiB", last/1024, first/1024)
}

// soakCluster names the cluster of slot w: its 10-second window and its
// sender.
func soakCluster(nonce string, w, senders int) string {
	return fmt.Sprintf("soak-%s-w%03d-s%d", nonce, w/senders, w%senders)
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	require.Positive(t, n, name)
	return n
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, client *http.Client, apiURL string, exited <-chan error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			t.Fatalf("auditpipe exited before it was ready: %v", err)
		default:
		}
		resp, err := client.Get(apiURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "auditpipe not ready after 2 minutes (last: %v)", err)
		time.Sleep(200 * time.Millisecond)
	}
}

func countStored(t *testing.T, client *http.Client, apiURL, cluster string) int64 {
	resp, err := client.Get(apiURL + "/api/v1/events?limit=1&cluster=" + url.QueryEscape(cluster))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct {
		Total int64 `json:"total"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return body.Total
}

// soakMetrics are the metric series the soak logs at its end: where the
// local store's time went (writes, checkpoints) and the Go runtime's
// memory and garbage collection, for a soak that falls behind.
var soakMetrics = []string{
	"auditpipe_localstore_write_duration_seconds_sum", "auditpipe_localstore_write_duration_seconds_count",
	"auditpipe_localstore_checkpoint_duration_seconds_sum", "auditpipe_localstore_checkpoint_duration_seconds_count",
	"auditpipe_localstore_checkpoint_rounds_sum", "auditpipe_localstore_checkpoint_rounds_count",
	"auditpipe_localstore_checkpoint_merge_wait_seconds_sum", "auditpipe_localstore_transaction_writes_sum",
	"auditpipe_localstore_transaction_writes_count",
	"go_gc_duration_seconds_sum", "go_gc_duration_seconds_count", "go_memstats_heap_inuse_bytes",
	"go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "process_cpu_seconds_total",
}

// logMetrics logs the soakMetrics series the all-in-one serves (best
// effort: a failure is logged, the soak's verdict does not depend on it).
func logMetrics(t *testing.T, client *http.Client, metricsURL string) {
	resp, err := client.Get(metricsURL)
	if err != nil {
		t.Logf("soak: metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if slices.Contains(soakMetrics, name) {
			lines = append(lines, line)
		}
	}
	t.Logf("soak: metrics at the end:\n%s", strings.Join(lines, "\n"))
}

// procStatusKB reads a kB field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatusKB(pid int, field string) (int64, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func mib(kbs []int64) string {
	parts := make([]string, len(kbs))
	for i, kb := range kbs {
		parts[i] = strconv.FormatInt(kb/1024, 10)
	}
	return strings.Join(parts, " ")
}

// lockedBuffer collects the child's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
