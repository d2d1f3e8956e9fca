package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/auditpipe/auditpipe/deploy/local/internal/eventstopic"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/schemas"
)

// ClusterDirEnv names the directory where test-kafka.sh keeps the nodes of
// the 3-node cluster: node<i>/{pid,start.sh,address}. The tests kill a node
// by its pid and start it again with its start.sh.
const clusterDirEnv = "AUDITPIPE_FAULT_CLUSTER_DIR"

// seedEnv replays a run: the seed every test prints.
const seedEnv = "AUDITPIPE_FAULT_SEED"

// partitions of the topics the tests create.
const partitions = 4

// postAttempts is how often the load posts a batch before it gives up on
// it (the batch is then not acknowledged).
const postAttempts = 5

// kafkaCluster is the external 3-node cluster of test-kafka.sh.
type kafkaCluster struct {
	brokers []string
	nodes   []string
}

func needCluster(t *testing.T) *kafkaCluster {
	t.Helper()
	dir, brokers := os.Getenv(clusterDirEnv), os.Getenv(kafkatest.BrokersEnv)
	if dir == "" || brokers == "" {
		t.Skipf("fault tests run on the 3-node Apache Kafka cluster of `make test-kafka` (%s and %s are not set)", clusterDirEnv, kafkatest.BrokersEnv)
	}
	nodes, err := filepath.Glob(filepath.Join(dir, "node*"))
	require.NoError(t, err)
	sort.Strings(nodes)
	require.Len(t, nodes, 3, "nodes under %s", dir)
	return &kafkaCluster{brokers: strings.Split(brokers, ","), nodes: nodes}
}

func (c *kafkaCluster) address(t *testing.T, i int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.nodes[i], "address"))
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// kill sends SIGKILL to node i and waits until its port refuses
// connections.
func (c *kafkaCluster) kill(t *testing.T, i int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.nodes[i], "pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL), "kill -9 node %d (pid %d)", i+1, pid)
	addr := c.address(t, i)
	require.Eventually(t, func() bool { return !listening(addr) }, 30*time.Second, 50*time.Millisecond, "node %d still listens on %s after kill -9", i+1, addr)
}

// start starts node i again on its data and waits until it listens.
func (c *kafkaCluster) start(t *testing.T, i int) {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(c.nodes[i], "start.sh")).CombinedOutput()
	require.NoError(t, err, "start node %d: %s", i+1, out)
	addr := c.address(t, i)
	require.Eventually(t, func() bool { return listening(addr) }, 2*time.Minute, 100*time.Millisecond, "node %d does not listen on %s after restart", i+1, addr)
}

// startAll starts every node (a KRaft quorum needs a majority up before
// any of them serves) and waits until all listen.
func (c *kafkaCluster) startAll(t *testing.T) {
	t.Helper()
	for i, n := range c.nodes {
		out, err := exec.Command("bash", filepath.Join(n, "start.sh")).CombinedOutput()
		require.NoError(t, err, "start node %d: %s", i+1, out)
	}
	for i := range c.nodes {
		addr := c.address(t, i)
		require.Eventually(t, func() bool { return listening(addr) }, 2*time.Minute, 100*time.Millisecond, "node %d does not listen on %s after restart", i+1, addr)
	}
}

func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// freeAddr returns a loopback address nothing listens on. The port stays
// the same over restarts of the all-in-one, as a real deployment's would.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// newRand returns the test's random source and logs its seed.
func newRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(seedEnv); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, seedEnv)
	}
	t.Logf("seed %d (%s=%d replays it)", seed, seedEnv, seed)
	return rand.New(rand.NewPCG(seed, seed))
}

// buildAuditpipe builds the all-in-one binary into a temp dir.
func buildAuditpipe(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "auditpipe")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/auditpipe")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// pipelineSetup is what stays the same over restarts of one all-in-one:
// topics, data dir, ports.
type pipelineSetup struct {
	bin, dataDir, config string
	brokers              []string
	topics               schemas.Topics
	webhookAddr, apiAddr string
	logPath              string
}

// newSetup writes a config for the all-in-one on the cluster: topics of
// the test's own, replication factor 3 and min.insync.replicas 2, a policy
// that keeps every event at Metadata.
func newSetup(t *testing.T, c *kafkaCluster, bin string) *pipelineSetup {
	t.Helper()
	dir := t.TempDir()
	suffix := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	topics := schemas.Topics{Raw: "faults.raw." + suffix, Events: "faults.events." + suffix, DLQ: "faults.dlq." + suffix}
	policy := filepath.Join(dir, "policy.yaml")
	require.NoError(t, os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
	cfg := fmt.Sprintf(`cluster: faults
policy: %s
kafka:
  partitions: %d
  replicationFactor: 3
  topicConfigs:
    min.insync.replicas: "2"
topics:
  raw: %s
  events: %s
  dlq: %s
`, policy, partitions, topics.Raw, topics.Events, topics.DLQ)
	config := filepath.Join(dir, "auditpipe.yaml")
	require.NoError(t, os.WriteFile(config, []byte(cfg), 0o600))
	s := &pipelineSetup{
		bin: bin, dataDir: filepath.Join(dir, "data"), config: config,
		brokers: c.brokers, topics: topics,
		webhookAddr: freeAddr(t), apiAddr: freeAddr(t),
		logPath: filepath.Join(dir, "auditpipe.log"),
	}
	// The log goes with the temp dir: show what went wrong first.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("auditpipe errors and warnings (last 30):\n%s", problems(s.logPath, 30))
		}
	})
	return s
}

// problems returns the last n ERROR and WARN lines of a log.
func problems(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (s *pipelineSetup) webhookURL(cluster string) string {
	return "http://" + s.webhookAddr + "/v1/audit/" + cluster
}

func (s *pipelineSetup) apiURL() string { return "http://" + s.apiAddr }

// proc is one running all-in-one process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// start runs the all-in-one and waits until /readyz answers 200. The
// process is killed when the test ends, if it still runs then.
func (s *pipelineSetup) start(t *testing.T) *proc {
	t.Helper()
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(s.bin, "run",
		"--config", s.config, "--data-dir", s.dataDir,
		"--brokers", strings.Join(s.brokers, ","),
		"--webhook-listen", s.webhookAddr, "--api-listen", s.apiAddr,
		"--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary itself is killed (go test -timeout, Ctrl-C), its
	// cleanups do not run: the kernel kills the all-in-one with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-p.done:
			t.Fatalf("auditpipe exited before it was ready (%v); log:\n%s", p.err, tail(s.logPath, 40))
		default:
		}
		resp, err := http.Get(s.apiURL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("auditpipe not ready after 2 minutes; log:\n%s", tail(s.logPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill9 kills the process without warning, as a crash or the OOM killer
// would.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
}

// stop asks the process to stop (SIGTERM) and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("auditpipe did not stop within a minute of SIGTERM")
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

// load posts events through the webhook as an apiserver would: batches,
// each retried a few times on failure. An event is acknowledged when a
// post of its batch answered 200.
type load struct {
	url, cluster, prefix string
	batch                int
	interval             time.Duration
	client               *http.Client

	mu     sync.Mutex
	sent   map[string]bool
	acked  map[string]bool
	posts  []postResult
	failed int
}

type postResult struct {
	at time.Time
	ok bool
}

func newLoad(url, cluster, prefix string) *load {
	return &load{
		url: url, cluster: cluster, prefix: prefix,
		batch: 20, interval: 20 * time.Millisecond,
		client: &http.Client{Timeout: 15 * time.Second},
		sent:   map[string]bool{},
		acked:  map[string]bool{},
	}
}

// run posts batches until ctx is canceled or max events were sent.
func (l *load) run(ctx context.Context, max int) {
	for seq := 0; seq < max && ctx.Err() == nil; seq += l.batch {
		n := min(l.batch, max-seq)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%06d", l.prefix, seq+i)
		}
		body := eventList(ids)
		l.mu.Lock()
		for _, id := range ids {
			l.sent[id] = true
		}
		l.mu.Unlock()
		// Up to 5 posts, a second apart: long enough to bridge a leader
		// election, short enough that a dead receiver drops batches (which
		// are then not acknowledged, as with a real apiserver).
		for attempt := 0; attempt < postAttempts && ctx.Err() == nil; attempt++ {
			ok := l.post(body)
			l.mu.Lock()
			l.posts = append(l.posts, postResult{at: time.Now(), ok: ok})
			if ok {
				for _, id := range ids {
					l.acked[id] = true
				}
			} else {
				l.failed++
			}
			l.mu.Unlock()
			if ok {
				break
			}
			sleepCtx(ctx, time.Second)
		}
		sleepCtx(ctx, l.interval)
	}
}

func (l *load) post(body []byte) bool {
	resp, err := l.client.Post(l.url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// recoveredAfter is how long after t0 the first successful post came that
// followed the last failed one; 0 when no post failed after t0.
func (l *load) recoveredAfter(t0 time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	lastFail := -1
	for i, p := range l.posts {
		if !p.ok && p.at.After(t0) {
			lastFail = i
		}
	}
	if lastFail < 0 {
		return 0
	}
	for _, p := range l.posts[lastFail+1:] {
		if p.ok {
			return p.at.Sub(t0)
		}
	}
	return -1
}

// ackedSince reports whether a post after t was acknowledged.
func (l *load) ackedSince(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range slices.Backward(l.posts) {
		if p.at.Before(t) {
			return false
		}
		if p.ok {
			return true
		}
	}
	return false
}

func (l *load) ackedIDs() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acked)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// eventList is an audit.k8s.io/v1 EventList with one ResponseComplete
// event per id.
func eventList(ids []string) []byte {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var b strings.Builder
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/faults/configmaps","verb":"create","user":{"username":"system:serviceaccount:faults:load"},`+
			`"sourceIPs":["127.0.0.1"],"objectRef":{"resource":"configmaps","namespace":"faults","name":%q,"apiVersion":"v1"},`+
			`"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`, id, id, now, now)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

type eventsResponse struct {
	Events []schemas.ProcessedEvent `json:"events"`
	Total  int                      `json:"total"`
}

func queryEvents(api, cluster string) (eventsResponse, error) {
	var out eventsResponse
	resp, err := http.Get(api + "/api/v1/events?" + url.Values{"cluster": {cluster}, "limit": {"10000"}}.Encode())
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("GET /api/v1/events: %s: %s", resp.Status, body)
	}
	return out, json.Unmarshal(body, &out)
}

// figures are what a fault test prints.
type figures struct {
	sent, acked, stored  int
	topicRecords         int
	duplicates, maxCopy  int
	recover, drain       time.Duration
	faults               int
	notAcknowledgedPosts int
}

func (f figures) String() string {
	return fmt.Sprintf("faults=%d sent=%d acknowledged=%d stored=%d events-topic-records=%d duplicates=%d max-copies=%d failed-posts=%d time-to-recover=%s drain=%s",
		f.faults, f.sent, f.acked, f.stored, f.topicRecords, f.duplicates, f.maxCopy, f.notAcknowledgedPosts,
		f.recover.Round(time.Millisecond), f.drain.Round(time.Millisecond))
}

// verify waits until every acknowledged event is in the store, then checks
// the store and the events topic: nothing acknowledged is lost, nothing is
// stored that was not sent, the store holds each identity once, and the
// copies on the events topic are bounded and are the same event. It prints
// the run's figures (recover is the test's time to recover) before it
// asserts on them.
func verify(t *testing.T, s *pipelineSetup, l *load, faults int, recover time.Duration) {
	t.Helper()
	acked := l.ackedIDs()
	require.NotEmpty(t, acked, "no post was acknowledged at all")
	start := time.Now()
	var got eventsResponse
	var missing []string
	deadline := start.Add(3 * time.Minute)
	for {
		var err error
		got, err = queryEvents(s.apiURL(), l.cluster)
		if err == nil {
			stored := map[string]bool{}
			for _, e := range got.Events {
				stored[e.AuditID] = true
			}
			missing = missing[:0]
			for id := range acked {
				if !stored[id] {
					missing = append(missing, id)
				}
			}
			if len(missing) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			t.Fatalf("%d of %d acknowledged events not stored after 3 minutes (query err %v), first: %v; auditpipe log:\n%s",
				len(missing), len(acked), err, missing[:min(10, len(missing))], tail(s.logPath, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	drain := time.Since(start)

	l.mu.Lock()
	sent := maps.Clone(l.sent)
	f := figures{sent: len(sent), acked: len(acked), stored: got.Total, faults: faults, notAcknowledgedPosts: l.failed, drain: drain, recover: recover}
	l.mu.Unlock()
	require.Less(t, got.Total, 10000, "the query limit would hide events; send fewer")
	seen := map[string]bool{}
	for _, e := range got.Events {
		require.True(t, sent[e.AuditID], "stored an event that was never sent: %s", e.AuditID)
		require.False(t, seen[e.AuditID], "the store holds %s twice", e.AuditID)
		seen[e.AuditID] = true
		require.Equal(t, "ResponseComplete", e.Stage)
		require.Equal(t, l.cluster, e.Pipeline.Cluster)
	}
	require.LessOrEqual(t, got.Total, f.sent, "stored more events than were sent")

	// The events topic: every copy of an identity must be the same event
	// (so the store's (cluster, auditID, stage) key removes it), and the
	// copies must stay bounded. Per fault, an event can be copied on the
	// raw topic once per post of its batch (a post that failed after
	// Kafka took the batch is retried, and the webhook's producer is not
	// idempotent) and each of those once more on the events topic (the
	// processor re-delivers a batch it produced but could not commit).
	// Over the whole run, duplicates must stay a minority: the faults hit
	// the batches in flight only.
	copies := eventstopic.ReadAll(t, kafka.GroupConfig{
		Brokers: s.brokers, Group: "faults-reader", Topics: []string{s.topics.Events}, ClientID: "faults-reader",
	}, got.Total)
	for _, c := range copies {
		f.topicRecords += len(c)
		f.duplicates += len(c) - 1
		f.maxCopy = max(f.maxCopy, len(c))
	}
	report(t, f)
	for _, c := range copies {
		for _, dup := range c[1:] {
			require.Equal(t, c[0], dup, "copies of one (cluster, auditID, stage) differ")
		}
	}
	require.Equal(t, got.Total, len(copies), "identities on the events topic vs in the store")
	require.LessOrEqual(t, f.maxCopy, 1+2*postAttempts*faults, "an event was copied more often than %d faults explain", faults)
	require.LessOrEqual(t, f.duplicates, f.sent/2, "duplicates are not a minority of the events sent")
}

// report prints a test's figures; test-kafka.sh runs the tests with -v, so
// they are in the CI log.
func report(t *testing.T, f figures) {
	t.Logf("FIGURES %s: %s", t.Name(), f)
}
