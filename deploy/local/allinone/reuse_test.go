package allinone

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	pluginlog "k8s.io/apiserver/plugin/pkg/audit/log"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/schemas"
)

// TestReusedAuditIDIsKeptAndMarked is issue 12's attack through the whole
// pipeline (decision 0012): a client sends a harmless request and then a
// malicious one with the same Audit-ID header, so the apiserver records
// two events with the same cluster, auditID and stage. Both must be
// stored, the second marked, counted and found by search, in the local
// store and in CLS; while the same event arriving again (an apiserver
// retry, the audit.log tailer next to the webhook, a re-formatted copy)
// still collapses to one.
func TestReusedAuditIDIsKeptAndMarked(t *testing.T) {
	cfg := testConfig(t)
	cfg.CLS.Mode = "cls-local"
	const cluster = "reuse-1"
	logPath := filepath.Join(t.TempDir(), "audit.log")
	require.NoError(t, os.WriteFile(logPath, nil, 0o600))
	cfg.Tail.Path, cfg.Tail.Cluster = logPath, cluster
	p := startPipeline(t, cfg)
	hook := p.WebhookURL() + "/v1/audit/" + cluster

	harmless := keptFixture(t)
	malicious := harmless.DeepCopy()
	malicious.Verb = "delete"
	malicious.ObjectRef = &auditinternal.ObjectReference{Resource: "clusterrolebindings", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1", Name: "cluster-admin"}
	malicious.RequestURI = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin"

	// 1. The harmless request, from the apiserver's webhook backend.
	batch := audittest.WebhookBackend(t, hook, audittest.ModeBlocking)
	require.True(t, batch.ProcessEvents(harmless))
	require.Equal(t, 1, waitForEvents(t, p.APIURL(), cluster, 1).Total)

	// 2. The same event three more times: the apiserver's log backend
	// writes it to the audit.log the producer tails (a JSON line with kind
	// and apiVersion, which webhook items lack); an apiserver retry; and a
	// copy re-formatted by some tool (indented, members in another order),
	// posted as an EventList item.
	var line bytes.Buffer
	require.True(t, pluginlog.NewBackend(&line, pluginlog.FormatJson, auditv1.SchemeGroupVersion).ProcessEvents(harmless))
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.Write(line.Bytes())
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.True(t, batch.ProcessEvents(harmless))
	postItem(t, hook, reformatted(t, line.Bytes()))
	waitForMetric(t, p.APIURL(), `auditpipe_localstore_events_total{outcome="duplicate"}`, 3)
	waitForMetric(t, p.APIURL(), `auditpipe_clssink_logs_total{outcome="duplicate"}`, 3)

	// 3. The malicious request under the same Audit-ID.
	require.True(t, batch.ProcessEvents(malicious))
	waitForMetric(t, p.APIURL(), `auditpipe_localstore_auditid_reused_total`, 1)
	waitForMetric(t, p.APIURL(), `auditpipe_clssink_auditid_reused_total`, 1)

	// Both stored, once each; the first unmarked, the second marked.
	all := searchAPI(t, p.APIURL(), url.Values{"q": {`auditID:"` + string(harmless.AuditID) + `"`}, "cluster": {cluster}})
	require.Equal(t, 2, all.Total)
	byVerb := map[string]schemas.ProcessedEvent{}
	for _, e := range all.Events {
		byVerb[e.Verb] = e
	}
	require.Contains(t, byVerb, string(harmless.Verb))
	require.Contains(t, byVerb, "delete")
	require.False(t, byVerb[string(harmless.Verb)].Pipeline.AuditIDReused)
	require.True(t, byVerb["delete"].Pipeline.AuditIDReused)
	require.Equal(t, "clusterrolebindings", byVerb["delete"].ObjectRef.Resource)
	require.NotEqual(t, byVerb["delete"].Pipeline.ContentHash, byVerb[string(harmless.Verb)].Pipeline.ContentHash)
	require.Equal(t, string(harmless.Stage), byVerb["delete"].Stage)

	// Search finds the marked one by the field.
	marked := searchAPI(t, p.APIURL(), url.Values{"q": {"auditpipe.auditIDReused:true"}, "cluster": {cluster}})
	require.Equal(t, 1, marked.Total)
	require.Equal(t, "delete", marked.Events[0].Verb)

	// CLS got each event once, the second marked. (The reuse counter
	// moves when the batch is prepared; the logs count once acknowledged.)
	waitForMetric(t, p.APIURL(), `auditpipe_clssink_logs_total{outcome="sent"}`, 2)
	logs := clsLogs(t, p.CLSLocalURL(), "local-"+cluster)
	require.Len(t, logs, 2)
	for _, l := range logs {
		require.Equal(t, string(harmless.AuditID), l["auditID"])
		require.Equal(t, map[bool]string{true: "true"}[l["verb"] == "delete"], l["auditpipe.auditIDReused"], "verb %s", l["verb"])
	}
}

// keptFixture returns a real apiserver event the e2e policy keeps, with
// timestamps of a minute ago.
func keptFixture(t *testing.T) *auditinternal.Event {
	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))
	for _, ev := range evs {
		if _, keep := expectFor(ev); keep && ev.Verb == "create" && ev.ObjectRef != nil && ev.ObjectRef.Resource != "secrets" &&
			!ev.StageTimestamp.IsZero() && !ev.RequestReceivedTimestamp.IsZero() {
			ev = ev.DeepCopy()
			audittest.Shift([]*auditinternal.Event{ev}, time.Now().Add(-time.Minute))
			return ev
		}
	}
	t.Fatal("no fixture the e2e policy keeps")
	return nil
}

// reformatted re-encodes a JSON event with its members in sorted order
// (the apiserver writes struct order) and indented.
func reformatted(t *testing.T, event []byte) []byte {
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(event, &m))
	sorted, err := json.Marshal(m)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, json.Indent(&out, sorted, "", "\t"))
	require.NotEqual(t, bytes.TrimSpace(event), out.Bytes())
	return out.Bytes()
}

// postItem posts an EventList of one item, bytes as given.
func postItem(t *testing.T, hook string, item []byte) {
	body := append(append([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`), item...), "]}"...)
	resp, err := http.Post(hook, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(msg))
}

// clsLogs returns the contents of the logs the local CLS server holds for
// topic.
func clsLogs(t *testing.T, clsURL, topic string) []map[string]string {
	resp, err := http.Get(clsURL + "/logs?topic_id=" + topic + "&limit=10000")
	require.NoError(t, err)
	defer resp.Body.Close()
	var logs []struct {
		Contents map[string]string `json:"contents"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&logs))
	out := make([]map[string]string, len(logs))
	for i, l := range logs {
		out[i] = l.Contents
	}
	return out
}
