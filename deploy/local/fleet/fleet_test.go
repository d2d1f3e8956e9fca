package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/auditpipe/auditpipe/deploy/local/internal/eventstopic"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// fleetEnv switches the test on; test-kafka.sh sets it for its "fleet"
// suite, next to the 3-node cluster's AUDITPIPE_TEST_KAFKA_BROKERS.
const fleetEnv = "AUDITPIPE_FLEET"

// partitions of the topics the test creates: more than there are replicas
// of any stage, so that every replica of a group has work.
const partitions = 4

// The CLS API key the local CLS server accepts and the consumers sign with.
const (
	clsSecretID  = "AKIDfleettest"
	clsSecretKey = "fleet-test-secret-key"
)

// restartDelay is how long a killed process stays down.
const restartDelay = 2 * time.Second

// The clusters of the fleet: each has its own apiserver, client
// certificate and CLS topic.
var clusters = []string{"fleet-a", "fleet-b"}

func clsTopic(cluster string) string { return "cls-topic-" + cluster }

// identity is the de-duplication key of an audit event.
type identity = eventstopic.Identity

// TestFleet runs every stage as its own processes on the 3-node cluster,
// kills -9 one process of each stage in turn under load and restarts it,
// and checks that every acknowledged event is stored exactly once, reached
// its cluster's CLS topic, and is found through the search API.
func TestFleet(t *testing.T) {
	if os.Getenv(fleetEnv) == "" || os.Getenv(kafkatest.BrokersEnv) == "" {
		t.Skipf("the fleet test runs on the 3-node Apache Kafka cluster of `make test-kafka` (%s and %s are not set)", fleetEnv, kafkatest.BrokersEnv)
	}
	quietAuditErrors(t)
	f := newFleet(t, connectionFromEnv(t))
	f.startAll(t)

	loads := make([]*apiserver, len(clusters))
	for i, c := range clusters {
		// Each cluster's apiserver sends to "its" producer first and to
		// the other one when that fails, as through a Service with two
		// endpoints.
		loads[i] = f.apiserver(t, c, i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range loads {
		wg.Go(func() { l.run(ctx) })
	}

	// One kill -9 per stage, in pipeline order, each process restarted
	// on its own data after a pause, as a supervisor (kubelet) would: long
	// enough that an apiserver gives up on a dead producer and goes to
	// the other one.
	time.Sleep(5 * time.Second)
	victims := []*stageProc{f.producers[0], f.processors[0], f.clsConsumers[0], f.store}
	for _, v := range victims {
		killed := time.Now()
		v.kill9(t)
		time.Sleep(restartDelay)
		v.start(t)
		t.Logf("kill -9 %s: ready again after %s", v.name, time.Since(killed).Round(time.Millisecond))
		time.Sleep(4 * time.Second)
	}
	cancel()
	wg.Wait()

	f.verify(t, loads, len(victims))
}

// fleet is the running deployment: its files, processes and the local CLS
// server.
type fleet struct {
	dir string
	// kafka is how the stages and the test's own clients connect:
	// SASL_SSL when test-kafka.sh started the cluster with it.
	kafka  kafka.Connection
	topics schemas.Topics
	group  string
	bins   map[string]string
	pki    string

	producers    []*stageProc
	processors   []*stageProc
	clsConsumers []*stageProc
	store        *stageProc
	storePath    string
	api          searchAPI

	cls   *clsRecorder
	ports ports
}

func newFleet(t *testing.T, conn kafka.Connection) *fleet {
	t.Helper()
	dir := t.TempDir()
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	f := &fleet{
		dir: dir, kafka: conn,
		topics: schemas.Topics{Raw: "fleet.raw." + suffix, Events: "fleet.events." + suffix,
			DLQ: "fleet.dlq." + suffix, Alerts: "fleet.alerts." + suffix},
		group: "fleet-" + suffix,
		bins:  buildStages(t, filepath.Join(dir, "bin")),
		pki:   filepath.Join(dir, "pki"),
		ports: ports{},
	}
	f.createTopics(t)

	// The producers' server certificate and one client certificate per
	// cluster (CN = cluster id), made by the producer itself.
	args := []string{"dev-certs", "--dir", f.pki, "--host", "127.0.0.1"}
	for _, c := range clusters {
		args = append(args, "--cluster", c)
	}
	out, err := exec.Command(f.bins["producer"], args...).CombinedOutput()
	require.NoError(t, err, "producer dev-certs: %s", out)

	f.cls = newCLSRecorder(t)
	policy := writeFile(t, filepath.Join(dir, "policy.yaml"),
		"apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
	var registry strings.Builder
	fmt.Fprintf(&registry, "defaults:\n  policy: %s\nclusters:\n", policy)
	for _, c := range clusters {
		fmt.Fprintf(&registry, "  %s:\n    environment: fleet-test\n    cls: {topicID: %s}\n", c, clsTopic(c))
	}
	fleetFile := writeFile(t, filepath.Join(dir, "fleet.yaml"), registry.String())

	for i := range 2 {
		f.producers = append(f.producers, f.producer(t, i+1))
		f.processors = append(f.processors, f.processor(t, i+1, fleetFile))
		f.clsConsumers = append(f.clsConsumers, f.consumer(t, fmt.Sprintf("consumer-cls-%d", i+1), fleetFile, false))
	}
	f.storePath = filepath.Join(dir, "store", "events")
	f.api = searchAPI{addr: f.ports.free(t), token: "fleet-api-token-" + suffix}
	require.NoError(t, os.MkdirAll(filepath.Dir(f.storePath), 0o700))
	f.store = f.consumer(t, "consumer-store", fleetFile, true)

	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range f.all() {
				t.Logf("%s: errors and warnings (last 20):\n%s", p.name, problems(p.logPath, 20))
			}
		}
	})
	return f
}

func (f *fleet) all() []*stageProc {
	all := slices.Concat(f.producers, f.processors, f.clsConsumers)
	return append(all, f.store)
}

// startAll starts the consumers first, then the processors, then the
// producers, so that nothing waits long for its reader.
func (f *fleet) startAll(t *testing.T) {
	t.Helper()
	for _, p := range slices.Concat([]*stageProc{f.store}, f.clsConsumers, f.processors, f.producers) {
		p.start(t)
	}
}

// createTopics creates the pipeline's topics as an operator would: the
// stage programs do not create topics on a production cluster.
func (f *fleet) createTopics(t *testing.T) {
	t.Helper()
	c := f.kafka
	c.ClientID = "fleet-test-admin"
	admin, err := saramakafka.NewAdminWithConfig(c.AdminConfig())
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var specs []kafka.TopicSpec
	for _, name := range []string{f.topics.Raw, f.topics.Events, f.topics.DLQ, f.topics.Alerts} {
		specs = append(specs, kafka.TopicSpec{Name: name, Partitions: partitions, ReplicationFactor: 3,
			Configs: map[string]string{"min.insync.replicas": "2"}})
	}
	require.NoError(t, admin.EnsureTopics(ctx, specs...))
}

func (f *fleet) yamlTopics() string {
	return fmt.Sprintf("{raw: %s, events: %s, dlq: %s, alerts: %s}", f.topics.Raw, f.topics.Events, f.topics.DLQ, f.topics.Alerts)
}

// producer is producer i: a webhook on TLS that authenticates clusters by
// their client certificate, its own data dir (spool).
func (f *fleet) producer(t *testing.T, i int) *stageProc {
	t.Helper()
	name := fmt.Sprintf("producer-%d", i)
	webhook, metrics := f.ports.free(t), f.ports.free(t)
	cfg := fmt.Sprintf(`dataDir: %s
%stopics: %s
webhook:
  listen: %s
  tls:
    certFile: %s
    keyFile: %s
    clientCAFile: %s
metrics: {listen: "%s"}
log: {level: info, format: text}
`, filepath.Join(f.dir, name), kafkaYAML(f.kafka, "fleet-"+name), f.yamlTopics(), webhook,
		filepath.Join(f.pki, "server.crt"), filepath.Join(f.pki, "server.key"), filepath.Join(f.pki, "ca.crt"), metrics)
	path := writeFile(t, filepath.Join(f.dir, name+".yaml"), cfg)
	return &stageProc{
		name: name, bin: f.bins["producer"], args: []string{"run", "--config", path},
		logPath: filepath.Join(f.dir, name+".log"), readyURL: "http://" + metrics + "/readyz",
		webhookURL: "https://" + webhook,
	}
}

// processor is processor i of the group, at-least-once, configured by
// its YAML file; the policy comes from the fleet registry's default.
func (f *fleet) processor(t *testing.T, i int, fleetFile string) *stageProc {
	t.Helper()
	name := fmt.Sprintf("processor-%d", i)
	metrics := f.ports.free(t)
	cfg := fmt.Sprintf(`%sgroup: %s
topics: %s
fleet: %s
sessionTimeout: 6s
metrics: {listen: "%s"}
log: {level: info, format: text}
`, kafkaYAML(f.kafka, "fleet-"+name), f.group+"-processor", f.yamlTopics(), fleetFile, metrics)
	path := writeFile(t, filepath.Join(f.dir, name+".yaml"), cfg)
	return &stageProc{
		name: name, bin: f.bins["processor"], args: []string{"run", "--config", path},
		logPath: filepath.Join(f.dir, name+".log"), readyURL: "http://" + metrics + "/readyz",
	}
}

// consumer is a consumer writing the local store and serving its search
// API (store), or writing the local CLS server. All of them share one
// group: the CLS sink's Kafka group is <group>.cls, the store's <group>.
// Secrets (the CLS key, the API token) come from files.
func (f *fleet) consumer(t *testing.T, name, fleetFile string, store bool) *stageProc {
	t.Helper()
	metrics := f.ports.free(t)
	sinks := fmt.Sprintf(`local: {enabled: false}
cls:
  mode: cls
  endpoint: %s
  secretIDFile: %s
  secretKeyFile: %s
  retryBase: 100ms
  retryMax: 2s
`, f.cls.url, writeFile(t, filepath.Join(f.dir, "cls-secret-id"), clsSecretID+"\n"),
		writeFile(t, filepath.Join(f.dir, "cls-secret-key"), clsSecretKey+"\n"))
	if store {
		sinks = fmt.Sprintf(`local: {enabled: true, path: %s}
cls: {mode: "off"}
api: {listen: "%s", tokenFile: %s}
`, f.storePath, f.api.addr, writeFile(t, filepath.Join(f.dir, "api-token"), f.api.token+"\n"))
	}
	cfg := fmt.Sprintf(`%sgroup: %s
topic: %s
sessionTimeout: 6s
fleet: %s
metrics: {listen: "%s"}
log: {level: info, format: text}
%s`, kafkaYAML(f.kafka, "fleet-"+name), f.group, f.topics.Events, fleetFile, metrics, sinks)
	path := writeFile(t, filepath.Join(f.dir, name+".yaml"), cfg)
	return &stageProc{
		name: name, bin: f.bins["consumer"], args: []string{"run", "--config", path},
		logPath: filepath.Join(f.dir, name+".log"), readyURL: "http://" + metrics + "/readyz",
	}
}

// clsRecorder is the local CLS server all CLS consumers write to, with
// every accepted log counted by identity and topic.
type clsRecorder struct {
	url string
	srv *clslocal.Server

	mu     sync.Mutex
	copies map[identity]map[string]int // topic -> copies
	hashes map[identity]map[string]bool
}

func newCLSRecorder(t *testing.T) *clsRecorder {
	t.Helper()
	r := &clsRecorder{copies: map[identity]map[string]int{}, hashes: map[identity]map[string]bool{}}
	var topics []string
	for _, c := range clusters {
		topics = append(topics, clsTopic(c))
	}
	r.srv = clslocal.New(clslocal.Options{
		Credentials: []clslocal.Credential{{SecretID: clsSecretID, SecretKey: clsSecretKey}},
		Topics:      topics,
		DiscardLogs: true,
		OnLog:       r.onLog,
	})
	hs := httptest.NewServer(r.srv.Handler())
	t.Cleanup(hs.Close)
	r.url = hs.URL
	return r
}

func (r *clsRecorder) onLog(l clslocal.Received) {
	c, _ := l.Get("auditpipe.cluster")
	id, _ := l.Get("auditID")
	st, _ := l.Get("stage")
	h, _ := l.Get("auditpipe.contentHash")
	k := identity{Cluster: c, AuditID: id, Stage: st}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.copies[k] == nil {
		r.copies[k] = map[string]int{}
		r.hashes[k] = map[string]bool{}
	}
	r.copies[k][l.Topic]++
	r.hashes[k][h] = true
}

// missing returns the identities of want that the CLS server has not
// received.
func (r *clsRecorder) missing(want map[identity]bool) []identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []identity
	for k := range want {
		if len(r.copies[k]) == 0 {
			out = append(out, k)
		}
	}
	return out
}

// apiserver is one cluster's kube-apiserver audit webhook: the
// apiserver's own client (k8s.io/apiserver/plugin/pkg/audit/webhook) with
// the cluster's client certificate, one per producer.
type apiserver struct {
	cluster  string
	backends []webhookBackend // preferred first

	mu       sync.Mutex
	sent     map[identity]bool
	acked    map[identity]bool
	batches  int
	failed   int // batches no producer acknowledged
	failover int // batches the second producer acknowledged
}

// The load: a batch of batchSize requests (each a ResponseComplete event,
// every fourth also with its RequestReceived stage) every batchInterval
// per cluster, for as long as the kills take: a few thousand events.
const (
	batchSize     = 10
	batchInterval = 100 * time.Millisecond
)

func (l *apiserver) run(ctx context.Context) {
	for seq := 0; ctx.Err() == nil; seq += batchSize {
		evs, ids := events(l.cluster, seq, batchSize)
		l.mu.Lock()
		for _, id := range ids {
			l.sent[id] = true
		}
		l.batches++
		l.mu.Unlock()
		ok := false
		for i, b := range l.backends {
			// The blocking webhook backend retries a failed request a few
			// times with backoff before it gives up and returns false.
			if b.ProcessEvents(evs...) {
				ok = true
				l.mu.Lock()
				if i > 0 {
					l.failover++
				}
				l.mu.Unlock()
				break
			}
		}
		l.mu.Lock()
		if ok {
			for _, id := range ids {
				l.acked[id] = true
			}
		} else {
			l.failed++
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(batchInterval):
		}
	}
}

// verify waits until every acknowledged event is in the store and at CLS,
// then prints the summary line and checks the store, the CLS topics, the
// search API over the whole fleet and the copies on the events topic.
func (f *fleet) verify(t *testing.T, loads []*apiserver, kills int) {
	t.Helper()
	acked, sent := map[identity]bool{}, map[identity]bool{}
	var failed, failover, batches int
	for _, l := range loads {
		l.mu.Lock()
		for k := range l.acked {
			acked[k] = true
		}
		for k := range l.sent {
			sent[k] = true
		}
		failed += l.failed
		failover += l.failover
		batches += l.batches
		l.mu.Unlock()
	}
	require.NotEmpty(t, acked, "no batch was acknowledged at all")

	api := f.api
	start := time.Now()
	var stored map[identity]int
	var lost, clsMissing []identity
	for {
		var err error
		stored, err = storedIdentities(api)
		if err == nil {
			lost = lost[:0]
			for k := range acked {
				if stored[k] == 0 {
					lost = append(lost, k)
				}
			}
			clsMissing = f.cls.missing(acked)
			if len(lost) == 0 && len(clsMissing) == 0 {
				break
			}
		}
		if time.Since(start) > 3*time.Minute {
			t.Logf("after 3 minutes: %d of %d acknowledged events not in the store, %d not at CLS (last query error: %v)",
				len(lost), len(acked), len(clsMissing), err)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	drain := time.Since(start)

	// The copies the pipeline made under the kills, on the events topic:
	// the store keeps one of each (cluster, auditID, stage).
	reader := f.kafka
	reader.ClientID = "fleet-reader"
	copies := eventstopic.ReadAll(t, reader.GroupConfig("fleet-reader", f.topics.Events), len(stored))
	records := 0
	for _, c := range copies {
		records += len(c)
	}
	clsLogs, clsDup := 0, 0
	f.cls.mu.Lock()
	for _, byTopic := range f.cls.copies {
		n := 0
		for _, c := range byTopic {
			n += c
		}
		clsLogs += n
		clsDup += n - 1
	}
	f.cls.mu.Unlock()
	storedTotal := 0
	for _, n := range stored {
		storedTotal += n
	}
	// The one summary line (test-kafka.sh runs the test with -v).
	fmt.Printf("fleet: clusters=%d acked=%d stored=%d lost=%d duplicates_removed=%d sent=%d events_topic_records=%d cls_logs=%d cls_duplicates=%d kills=%d failed_batches=%d failover_batches=%d drain=%s kafka=%s\n",
		len(clusters), len(acked), storedTotal, len(lost), records-len(copies), len(sent), records, clsLogs, clsDup, kills,
		failed, failover, drain.Round(time.Millisecond), security(f.kafka))

	slices.SortFunc(lost, cmpIdentity)
	require.Empty(t, lost, "acknowledged events not in the store (first 10): %v", lost[:min(10, len(lost))])
	slices.SortFunc(clsMissing, cmpIdentity)
	require.Empty(t, clsMissing, "acknowledged events not at CLS (first 10): %v", clsMissing[:min(10, len(clsMissing))])

	// Stored once, and nothing that was not sent.
	for k, n := range stored {
		require.Equal(t, 1, n, "the store holds %v %d times", k, n)
		require.True(t, sent[k], "the store holds %v, which was never sent", k)
	}

	// Each cluster's events reached its own CLS topic and no other, and
	// the copies of an event at CLS are the same event.
	f.cls.mu.Lock()
	for k, byTopic := range f.cls.copies {
		require.True(t, sent[k], "CLS received %v, which was never sent", k)
		for topic := range byTopic {
			require.Equal(t, clsTopic(k.Cluster), topic, "%v went to the CLS topic of another cluster", k)
		}
		require.Len(t, f.cls.hashes[k], 1, "copies of %v at CLS differ in content hash", k)
	}
	f.cls.mu.Unlock()

	// The search API answers for the whole fleet: one query, every
	// cluster, the same counts as the per-cluster answers.
	perCluster := map[string]int{}
	for k := range stored {
		perCluster[k.Cluster]++
	}
	fleetWide := searchByCluster(t, api)
	require.Equal(t, perCluster, fleetWide, "events per cluster: per-cluster queries vs one fleet-wide search")
	require.Len(t, fleetWide, len(clusters))

	// The copies on the events topic are one event each, and few: a kill
	// re-delivers at most the batches in flight.
	require.Equal(t, len(stored), len(copies), "identities on the events topic vs in the store")
	for k, c := range copies {
		for _, dup := range c[1:] {
			require.Equal(t, c[0], dup, "copies of %v on the events topic differ", k)
		}
	}
	require.LessOrEqual(t, records-len(copies), len(sent)/2, "duplicates are not a minority of the events sent")
}

func cmpIdentity(a, b identity) int {
	return strings.Compare(a.Cluster+"/"+a.AuditID+"/"+a.Stage, b.Cluster+"/"+b.AuditID+"/"+b.Stage)
}

// searchAPI is the store consumer's search API: where it listens and the
// bearer token it requires.
type searchAPI struct {
	addr, token string
}

func (a searchAPI) url() string { return "http://" + a.addr }

// get fetches path from the API and decodes its JSON answer into v.
func (a searchAPI) get(path string, v any) error {
	req, err := http.NewRequest(http.MethodGet, a.url()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// storedIdentities asks the search API for each cluster's events and
// counts them by identity.
func storedIdentities(api searchAPI) (map[identity]int, error) {
	out := map[identity]int{}
	for _, c := range clusters {
		var resp struct {
			Events []schemas.ProcessedEvent `json:"events"`
			Total  int                      `json:"total"`
		}
		if err := api.get(search.EventsPath+"?"+url.Values{"cluster": {c}, "limit": {strconv.Itoa(local.MaxLimit)}}.Encode(), &resp); err != nil {
			return nil, err
		}
		if resp.Total >= local.MaxLimit {
			return nil, fmt.Errorf("cluster %s: %d events, more than one page of %d: send fewer", c, resp.Total, local.MaxLimit)
		}
		for _, e := range resp.Events {
			if e.Pipeline.Cluster != c {
				return nil, fmt.Errorf("query for cluster %s returned an event of %q", c, e.Pipeline.Cluster)
			}
			out[identity{Cluster: e.Pipeline.Cluster, AuditID: e.AuditID, Stage: e.Stage}]++
		}
	}
	return out, nil
}

// searchByCluster runs one CLS-syntax analysis over the whole store.
func searchByCluster(t *testing.T, api searchAPI) map[string]int {
	t.Helper()
	q := `* | SELECT "auditpipe.cluster" AS cluster, count(*) AS n GROUP BY cluster`
	var resp search.SearchRowsResponse
	require.NoError(t, api.get(search.SearchPath+"?"+url.Values{"q": {q}}.Encode(), &resp))
	out := map[string]int{}
	for _, row := range resp.Rows {
		require.Len(t, row, 2, "row %v", row)
		c, ok := row[0].(string)
		require.True(t, ok, "cluster column %v", row[0])
		n, ok := row[1].(float64)
		require.True(t, ok, "count column %v", row[1])
		out[c] = int(n)
	}
	return out
}
