package allinone

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/saramakafka"
	"github.com/auditpipe/auditpipe/schemas"
)

// End-to-end tests of issue 12 (events must not be altered): raw bytes
// posted to the webhook as an attacker with a producer credential could,
// through the whole pipeline into the local store.

// ingestEvent is a minimal apiserver event with the given auditID (JSON
// text, so that it can hold any bytes) and request body, kept by the e2e
// policy at RequestResponse.
func ingestEvent(auditID, body string) string {
	now := time.Now().UTC().Add(-time.Minute).Format("2006-01-02T15:04:05.000000Z")
	return `{"level":"RequestResponse","auditID":"` + auditID + `","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/default/configmaps","verb":"create",` +
		`"user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],` +
		`"objectRef":{"resource":"configmaps","namespace":"default","name":"cm","apiVersion":"v1"},` +
		`"responseStatus":{"metadata":{},"code":201},"requestObject":` + body + `,` +
		`"requestReceivedTimestamp":"` + now + `","stageTimestamp":"` + now + `"}`
}

// postItems posts an EventList of the items, byte for byte, and requires
// the webhook's acknowledgement.
func postItems(t *testing.T, p *Pipeline, cluster string, items ...string) {
	t.Helper()
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
	resp, err := http.Post(p.WebhookURL()+"/v1/audit/"+cluster, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "acknowledged: %s", msg)
}

// readDLQ reads the DLQ topic until it holds n processor records.
func readDLQ(t *testing.T, p *Pipeline, topic string, n int) []kafka.Record {
	t.Helper()
	g, err := saramakafka.NewGroup(kafka.GroupConfig{
		Brokers: p.Brokers(), Group: "ingest-dlq-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Topics: []string{topic}, ClientID: "ingest-dlq", SessionTimeout: 6 * time.Second, SASL: p.KafkaSASL(),
	})
	require.NoError(t, err)
	defer g.Close()
	var mu sync.Mutex
	var got []kafka.Record
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, kafka.HandlerFunc(func(_ context.Context, b kafka.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range b.Records {
				if string(r.HeaderValue(schemas.HeaderDLQStage)) == "processor" {
					got = append(got, r)
				}
			}
			return nil
		}))
	}()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	}, 2*time.Minute, 200*time.Millisecond, "%d DLQ records", n)
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	return got
}

// TestInvalidUTF8IsNotMergedEndToEnd: two events whose auditIDs differ
// only in invalid UTF-8 bytes, and a valid one, in one acknowledged
// batch. Decoders read both invalid ones as "a\uFFFDb", so the store kept
// one event for two acknowledged. Now every acknowledged event is either
// stored or in the DLQ with the reason and its bytes as sent.
func TestInvalidUTF8IsNotMergedEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	p := startPipeline(t, cfg)
	const cluster = "utf8-1"
	bad1, bad2 := ingestEvent("a\xffb", `{"kind":"ConfigMap"}`), ingestEvent("a\xfeb", `{"kind":"ConfigMap"}`)
	good := ingestEvent("valid-1", `{"kind":"ConfigMap"}`)
	postItems(t, p, cluster, bad1, bad2, good)

	stored := waitForEvents(t, p.APIURL(), cluster, 1)
	dlq := readDLQ(t, p, cfg.Topics.DLQ, 2)
	require.Len(t, dlq, 2)
	var values []string
	for _, r := range dlq {
		require.Contains(t, string(r.HeaderValue(schemas.HeaderDLQReason)), "not valid UTF-8")
		values = append(values, string(r.Value))
	}
	require.ElementsMatch(t, []string{bad1, bad2}, values, "the DLQ keeps each event's bytes")
	// Nothing more arrives: the store holds exactly the valid event.
	time.Sleep(time.Second)
	stored = queryEvents(t, p.APIURL(), url.Values{"cluster": {cluster}, "limit": {"100"}})
	require.Equal(t, 1, stored.Total)
	require.Equal(t, "valid-1", stored.Events[0].AuditID)
}

// TestDeepEventStaysSearchable: an event nested 1,000 levels deep in its
// request body was stored whole, and every search of the store that reads
// JSON fields failed with 500 (SQLite's JSON functions stop at 1,000
// levels) until retention removed it. Now the processor cuts the deep
// subtree at ingest and marks it; searches keep working, and the event is
// found with the rest of its content.
func TestDeepEventStaysSearchable(t *testing.T) {
	p := startPipeline(t, testConfig(t))
	const cluster = "deep-1"
	deep := `{"kind":"ConfigMap","data":{"k":"v"},"deep":` + strings.Repeat(`{"a":`, 1000) + `"leaf"` + strings.Repeat("}", 1000) + `}`
	postItems(t, p, cluster,
		ingestEvent("normal-1", `{"kind":"ConfigMap","data":{"k":"v"}}`),
		ingestEvent("deep-1", deep),
		ingestEvent("normal-2", `{"kind":"ConfigMap","data":{"k":"w"}}`))
	waitForEvents(t, p.APIURL(), cluster, 3)

	// A search on a field that no column holds reads every event's body
	// (CLS keeps requestObject as one text field: its words are matched,
	// decision 0006), the deep one included.
	resp, err := http.Get(p.APIURL() + "/api/v1/search?" + url.Values{"cluster": {cluster}, "q": {"requestObject:ConfigMap"}}.Encode())
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%.300s", body)
	var res struct {
		Events []json.RawMessage `json:"events"`
		Total  int               `json:"total"`
	}
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, 3, res.Total)
	found := false
	for _, raw := range res.Events {
		var ev schemas.ProcessedEvent
		require.NoError(t, json.Unmarshal(raw, &ev))
		if ev.AuditID != "deep-1" {
			require.Empty(t, ev.Pipeline.Cut)
			continue
		}
		found = true
		require.Len(t, ev.Pipeline.Cut, 1)
		require.True(t, strings.HasPrefix(ev.Pipeline.Cut[0], "/requestObject/deep/a/a/"), ev.Pipeline.Cut[0])
		require.JSONEq(t, `{"k":"v"}`, string(mustField(t, ev.RequestObject, "data")), "the rest of the body is kept")
		require.Contains(t, string(raw), `"`+schemas.CutValue+`"`)
	}
	require.True(t, found, "the deep event is found")
}

func mustField(t *testing.T, obj json.RawMessage, key string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(obj, &m))
	return m[key]
}

// TestRepeatedKeysReadOnceEndToEnd: a body with a repeated key. The
// apiserver and every Go reader take the last copy, SQLite's json_extract
// the first, so a search found the event by a value no Go reader (nor the
// redactor) ever saw. Now the store holds one copy, the last, and the
// search and the stored event agree.
func TestRepeatedKeysReadOnceEndToEnd(t *testing.T) {
	p := startPipeline(t, testConfig(t))
	const cluster = "dup-1"
	postItems(t, p, cluster, ingestEvent("dup-1", `{"kind":"ConfigMap","data":{"k":"first"},"data":{"k":"last"}}`))
	stored := waitForEvents(t, p.APIURL(), cluster, 1)
	require.Equal(t, 1, stored.Total)
	require.JSONEq(t, `{"k":"last"}`, string(mustField(t, stored.Events[0].RequestObject, "data")))
	// requestObject is one text field for search, as in CLS (decision
	// 0006): the first copy's value is nowhere in the stored event.
	require.Empty(t, searchAPI(t, p.APIURL(), url.Values{"cluster": {cluster}, "q": {"requestObject:first"}}).Events)
	require.Len(t, searchAPI(t, p.APIURL(), url.Values{"cluster": {cluster}, "q": {"requestObject:last"}}).Events, 1)
}
