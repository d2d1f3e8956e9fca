package allinone

import (
	"bufio"
	"context"
	"encoding/json"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/schemas"
)

// testConfig returns a config on free loopback ports with its own data
// directory, on the in-process broker or on the external cluster that
// `make test-kafka` names (with topics of its own, so runs do not mix).
func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Policy = "testdata/e2e-policy.yaml"
	cfg.Kafka.Listen = "127.0.0.1:0"
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	if v := os.Getenv(kafkatest.BrokersEnv); v != "" {
		cfg.Kafka.Brokers = strings.Split(v, ",")
		suffix := "." + strconv.FormatInt(time.Now().UnixNano(), 36)
		cfg.Topics.Raw += suffix
		cfg.Topics.Events += suffix
		cfg.Topics.DLQ += suffix
		cfg.Topics.Alerts += suffix
	}
	return cfg
}

func startPipeline(t *testing.T, cfg Config) *Pipeline {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Start(ctx, cfg, logger)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, p.Shutdown(ctx))
	})
	return p
}

// expected is what the e2e policy keeps of an event, computed from the
// policy's three rules by hand.
type expected struct {
	level  string
	bodies bool
}

func expectFor(ev *auditinternal.Event) (expected, bool) {
	if ev.Stage == auditinternal.StageRequestReceived {
		return expected{}, false
	}
	switch ev.Verb {
	case "get", "list", "watch":
		return expected{}, false
	}
	if ev.ObjectRef != nil && ev.ObjectRef.Resource == "secrets" && ev.ObjectRef.APIGroup == "" {
		return expected{level: "Metadata"}, true
	}
	return expected{level: string(ev.Level), bodies: ev.Level != auditinternal.LevelMetadata}, true
}

// TestEndToEnd posts the public fixture events through kube-apiserver's own
// webhook backend and checks, through the query API, that each kept event
// is stored exactly once with the policy applied, that a retried batch
// changes nothing, and that a restart keeps the data.
func TestEndToEnd(t *testing.T) {
	for _, delivery := range []string{"at-least-once", "exactly-once"} {
		t.Run(delivery, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Processor.Delivery = delivery
			testEndToEnd(t, cfg)
		})
	}
	// The same through the VictoriaLogs store (decision 0026): stored
	// once, a retry changes nothing, a restart keeps everything (each
	// offset commit waited for the store's Sync).
	t.Run("vlogs", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Store.Engine = eventstore.EngineVictoriaLogs
		testEndToEnd(t, cfg)
	})
}

func testEndToEnd(t *testing.T, cfg Config) {
	p := startPipeline(t, cfg)
	const cluster = "e2e-1"

	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))
	audittest.Shift(evs, time.Now().Add(-time.Minute))
	want := keptOf(t, cluster, evs)
	require.Greater(t, len(want.exp), 50, "the fixtures should give the policy something to keep")
	require.Less(t, len(want.exp), len(audittest.Distinct(cluster, evs)), "the policy should drop some fixtures")

	backend := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/"+cluster, audittest.ModeBatch)
	require.True(t, backend.ProcessEvents(evs...))
	backend.Shutdown() // flushes the batches

	got := waitForEvents(t, p.APIURL(), cluster, want.total())
	requireStoredOnce(t, got, want)

	// An apiserver retry posts the same events again (here in blocking
	// mode, one request per call): nothing changes.
	retry := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/"+cluster, audittest.ModeBlocking)
	for start := 0; start < len(evs); start += 100 {
		require.True(t, retry.ProcessEvents(evs[start:min(start+100, len(evs))]...))
	}
	waitForMetric(t, p.APIURL(), `auditpipe_consumer_records_total{outcome="accepted",sink="local"}`, float64(2*len(want.exp)))
	requireStoredOnce(t, queryEvents(t, p.APIURL(), url.Values{"cluster": {cluster}, "limit": {"10000"}}), want)

	// Filters of the query API.
	deletes := queryEvents(t, p.APIURL(), url.Values{"cluster": {cluster}, "verb": {"delete"}, "limit": {"10000"}})
	require.NotEmpty(t, deletes.Events)
	for _, e := range deletes.Events {
		require.Equal(t, "delete", e.Verb)
	}

	// A restart on the same data directory keeps everything.
	require.NoError(t, p.Shutdown(context.Background()))
	p2 := startPipeline(t, cfg)
	requireStoredOnce(t, queryEvents(t, p2.APIURL(), url.Values{"cluster": {cluster}, "limit": {"10000"}}), want)
}

func TestWebhookRejectsBodiesThatAreNotEventLists(t *testing.T) {
	p := startPipeline(t, testConfig(t))
	for name, body := range map[string]string{
		"not JSON":         `{"kind":"EventList","items":[`,
		"wrong kind":       `{"kind":"PodList","apiVersion":"v1","items":[]}`,
		"no items":         `{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}`,
		"wrong apiVersion": `{"kind":"EventList","apiVersion":"audit.k8s.io/v2","items":[]}`,
	} {
		resp, err := http.Post(p.WebhookURL()+"/v1/audit/c1", "application/json", strings.NewReader(body))
		require.NoError(t, err, name)
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", name, msg)
		require.Contains(t, string(msg), "EventList", name)
	}
}

func TestStartRefusesBadPolicyAndConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Policy = "testdata/does-not-exist.yaml"
	_, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "does-not-exist.yaml")

	bad := t.TempDir() + "/bad-policy.yaml"
	require.NoError(t, os.WriteFile(bad, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbz: [get]\n"), 0o600))
	cfg.Policy = bad
	_, err = Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "verbz")

	cfg = testConfig(t)
	cfg.Webhook.Listen = "nowhere"
	_, err = Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "webhook.listen")
}

type eventsResponse struct {
	Events []schemas.ProcessedEvent `json:"events"`
	Total  int                      `json:"total"`
}

func queryEvents(t *testing.T, api string, q url.Values) eventsResponse {
	t.Helper()
	return getEvents(t, api+"/api/v1/events", q)
}

// searchAPI runs a CLS-syntax search through GET /api/v1/search.
func searchAPI(t *testing.T, api string, q url.Values) eventsResponse {
	t.Helper()
	return getEvents(t, api+"/api/v1/search", q)
}

func getEvents(t *testing.T, endpoint string, q url.Values) eventsResponse {
	t.Helper()
	resp, err := http.Get(endpoint + "?" + q.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var out eventsResponse
	require.NoError(t, json.Unmarshal(body, &out), string(body))
	return out
}

func waitForEvents(t *testing.T, api, cluster string, n int) eventsResponse {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := queryEvents(t, api, url.Values{"cluster": {cluster}, "limit": {"10000"}})
		if got.Total >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitForMetric(t *testing.T, api, series string, atLeast float64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last float64
	for time.Now().Before(deadline) {
		resp, err := http.Get(api + "/metrics")
		require.NoError(t, err)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
				last, _ = strconv.ParseFloat(v, 64)
			}
		}
		resp.Body.Close()
		if last >= atLeast {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("metric %s reached %v, want at least %v", series, last, atLeast)
}

// kept is what the e2e policy keeps of the fixtures: per identity, the
// expected form and the number of different events under it. The public
// fixtures reuse auditIDs (falco's minikube traces), and decision 0012
// stores each different event, all but the first marked.
type kept struct {
	exp      map[audittest.Identity]expected
	distinct map[audittest.Identity][]*auditinternal.Event
}

func keptOf(t *testing.T, cluster string, evs []*auditinternal.Event) kept {
	k := kept{exp: map[audittest.Identity]expected{}, distinct: map[audittest.Identity][]*auditinternal.Event{}}
	for _, ev := range evs {
		e, keep := expectFor(ev)
		if !keep {
			continue
		}
		id := audittest.Identity{Cluster: cluster, AuditID: string(ev.AuditID), Stage: string(ev.Stage)}
		if prev, ok := k.exp[id]; ok {
			require.Equal(t, prev, e, "fixtures under %v the policy treats differently: extend the oracle", id)
		}
		k.exp[id] = e
		if !slices.ContainsFunc(k.distinct[id], func(o *auditinternal.Event) bool { return reflect.DeepEqual(o, ev) }) {
			k.distinct[id] = append(k.distinct[id], ev)
		}
	}
	return k
}

func (k kept) total() int {
	n := 0
	for _, d := range k.distinct {
		n += len(d)
	}
	return n
}

func requireStoredOnce(t *testing.T, got eventsResponse, want kept) {
	t.Helper()
	require.Equal(t, want.total(), got.Total, "stored events")
	require.Len(t, got.Events, want.total())
	seen := map[audittest.Identity]int{}
	marked := map[audittest.Identity]int{}
	for _, e := range got.Events {
		id := audittest.Identity{Cluster: e.Pipeline.Cluster, AuditID: e.AuditID, Stage: e.Stage}
		seen[id]++
		require.LessOrEqual(t, seen[id], len(want.distinct[id]), "stored more often than there are different events: %v", id)
		if e.Pipeline.AuditIDReused {
			marked[id]++
		}
		exp, ok := want.exp[id]
		require.True(t, ok, "stored but the policy drops it: %v (verb %s)", id, e.Verb)
		require.Equal(t, exp.level, e.Level, "level of %v", id)
		if !exp.bodies {
			require.Empty(t, e.RequestObject, "request body of %v at %s", id, e.Level)
			require.Empty(t, e.ResponseObject, "response body of %v at %s", id, e.Level)
		}
		require.Equal(t, schemas.SourceWebhook, e.Pipeline.Source)
		require.NotNil(t, e.Pipeline.Principal, "enrichment of %v", id)
		require.NotEmpty(t, e.Pipeline.Principal.Type, "enrichment of %v", id)
		require.NotEmpty(t, e.Pipeline.Operation, "enrichment of %v", id)
		require.Equal(t, schemas.SchemaVersion, e.Pipeline.SchemaVersion)
	}
	for id, n := range seen {
		require.Equal(t, n-1, marked[id], "all but the first event under %v are marked as a reused auditID", id)
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestCLSLocalSink runs the consumer's CLS sink through the real CLS SDK
// into the in-process CLS server (--sink cls-local): every kept event
// reaches the cluster's CLS topic with the audit fields as CLS keys.
func TestCLSLocalSink(t *testing.T) {
	cfg := testConfig(t)
	cfg.CLS.Mode = "cls-local"
	p := startPipeline(t, cfg)
	require.NotEmpty(t, p.CLSLocalURL())
	const cluster = "cls-1"

	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)+"/falco"))
	backend := audittest.WebhookBackend(t, p.WebhookURL()+"/v1/audit/"+cluster, audittest.ModeBlocking)
	require.True(t, backend.ProcessEvents(evs...))
	kept := map[string]bool{}
	for _, ev := range evs {
		if _, keep := expectFor(ev); keep {
			kept[string(ev.AuditID)+"/"+string(ev.Stage)] = true
		}
	}
	// falco's traces reuse two auditIDs for different events: each is
	// stored (decision 0012).
	want := keptOf(t, cluster, evs).total()
	require.Greater(t, want, len(kept))
	stored := waitForEvents(t, p.APIURL(), cluster, want)
	require.Equal(t, want, stored.Total)

	type clsLog struct {
		Topic    string            `json:"topic_id"`
		Time     int64             `json:"time"`
		Contents map[string]string `json:"contents"`
	}
	var logs []clsLog
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.CLSLocalURL() + "/logs?topic_id=local-" + cluster + "&limit=10000")
		require.NoError(t, err)
		logs = nil
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&logs))
		resp.Body.Close()
		if len(logs) >= want {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.GreaterOrEqual(t, len(logs), want, "logs at the local CLS server")
	seen := map[string]bool{}
	for _, l := range logs {
		require.Equal(t, "local-"+cluster, l.Topic)
		require.NotEmpty(t, l.Contents["auditID"])
		require.NotEmpty(t, l.Contents["verb"])
		id := l.Contents["auditID"] + "/" + l.Contents["stage"]
		require.True(t, kept[id], "CLS got an event the policy drops: %s", id)
		seen[id] = true
	}
	require.Len(t, seen, len(kept), "each kept event at least once in CLS")
}
