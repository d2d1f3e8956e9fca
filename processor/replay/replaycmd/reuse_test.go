package replaycmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
	"github.com/auditpipe/auditpipe/schemas"
)

// TestReplayKeepsReusedAuditIDs replays a raw topic holding the public
// fixtures and issue 12's attack into a local store of each engine
// (decision 0012): a
// different event under a reused auditID is kept and marked, the same
// event sent again (re-formatted, or as an audit.log line) collapses; and
// replaying the same history through another policy into the same store
// marks nothing new, because the identity is of the raw event.
func TestReplayKeepsReusedAuditIDs(t *testing.T) {
	const cluster = "c1"
	brokers := kafkatest.Brokers(t)
	topic := strings.NewReplacer("/", ".").Replace(t.Name()) + ".raw"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var raws [][]byte
	for _, f := range audittest.Load(t, audittest.Dir(t)) {
		if f.Event != nil {
			raws = append(raws, f.Raw)
		}
	}
	// The attack: a harmless request, the same request as the log
	// backend writes it (kind and apiVersion added, members in another
	// order, indented), again as sent, and a malicious one under its id.
	harmless := []byte(`{"level":"Metadata","auditID":"6e1f2d4c-0000-4000-8000-reused000001","stage":"ResponseComplete",` +
		`"requestURI":"/api/v1/namespaces/team-a/configmaps","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},` +
		`"sourceIPs":["10.0.0.7"],"objectRef":{"resource":"configmaps","namespace":"team-a","name":"settings","apiVersion":"v1"},` +
		`"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-11-30T10:00:00.000001Z","stageTimestamp":"2026-11-30T10:00:00.004000Z"}`)
	asLogLine := func(raw []byte) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		m["kind"], m["apiVersion"] = "Event", "audit.k8s.io/v1"
		b, err := json.MarshalIndent(m, "", "  ")
		require.NoError(t, err)
		return b
	}
	malicious := bytes.Replace(bytes.Replace(harmless, []byte(`"verb":"create"`), []byte(`"verb":"delete"`), 1),
		[]byte(`"resource":"configmaps"`), []byte(`"resource":"secrets"`), 1)
	require.NotEqual(t, harmless, malicious)
	raws = append(raws, harmless, asLogLine(harmless), harmless, malicious)
	writeRaw(t, ctx, brokers, topic, cluster, raws)

	// The oracle: per identity, the distinct raw contents (JSON equality,
	// top-level kind and apiVersion aside).
	contents := map[string][]any{}
	for _, raw := range raws {
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		delete(m, "kind")
		delete(m, "apiVersion")
		id := cluster + "/" + m["auditID"].(string) + "/" + m["stage"].(string)
		if !containsDeep(contents[id], m) {
			contents[id] = append(contents[id], m)
		}
	}
	attackID := cluster + "/6e1f2d4c-0000-4000-8000-reused000001/ResponseComplete"
	require.Len(t, contents[attackID], 2)

	for _, engine := range []string{eventstore.EngineVictoriaLogs, eventstore.EngineSQLite} {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			replay := func(policyArgs []string, checkpoint string) {
				args := append([]string{"replay", "--brokers", strings.Join(brokers, ","), "--topic", topic,
					"--target", "local", "--store-engine", engine, "--store", store, "--checkpoint", filepath.Join(dir, checkpoint)}, policyArgs...)
				var out bytes.Buffer
				require.NoError(t, run(ctx, args, &out, &bytes.Buffer{}))
				require.Contains(t, out.String(), "complete")
			}
			check := func() map[string]string {
				rows := storedEvents(t, engine, store)
				perID := map[string]int{}
				byRow := map[string]string{}
				for _, pe := range rows {
					id := pe.Pipeline.Cluster + "/" + pe.AuditID + "/" + pe.Stage
					perID[id]++
					if pe.Pipeline.AuditIDReused {
						require.Greater(t, len(contents[id]), 1, "%s marked, but its raw events are all the same", id)
					}
					byRow[id+"/"+pe.Pipeline.ContentHash] = pe.Verb + "/" + strconv.FormatBool(pe.Pipeline.AuditIDReused)
				}
				for id, n := range perID {
					require.LessOrEqual(t, n, len(contents[id]), "%s stored more often than it has distinct contents", id)
				}
				return byRow
			}

			replay(nil, "cp1.json")
			first := check()
			var attack []string
			for k, v := range first {
				if strings.HasPrefix(k, attackID+"/") {
					attack = append(attack, v)
				}
			}
			require.ElementsMatch(t, []string{"create/false", "delete/true"}, attack, "both kept, the second marked")

			// The same history through a policy that keeps everything at
			// Metadata (the default drops some events and keeps others with
			// bodies): the rows stored before stay as they are, none is stored
			// again, nothing new is marked unless its raw contents differ.
			pol := filepath.Join(dir, "metadata.yaml")
			require.NoError(t, os.WriteFile(pol, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600))
			replay([]string{"--policy", pol}, "cp2.json")
			second := check()
			for k, v := range first {
				require.Equal(t, v, second[k], "row %s", k)
			}
			require.Greater(t, len(second), len(first), "the wider policy stored events the default dropped")
		})
	}
}

func containsDeep(list []any, v any) bool {
	for _, x := range list {
		if reflect.DeepEqual(x, v) {
			return true
		}
	}
	return false
}

// writeRaw writes values to a new raw topic as the webhook producer does.
func writeRaw(t *testing.T, ctx context.Context, brokers []string, topic, cluster string, values [][]byte) {
	admin, err := kafkago.NewAdmin(brokers, "test")
	require.NoError(t, err)
	defer admin.Close()
	require.NoError(t, admin.EnsureTopics(ctx, kafka.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}))
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	defer prod.Close()
	recs := make([]kafka.Record, len(values))
	for i, v := range values {
		var id struct {
			AuditID string `json:"auditID"`
		}
		require.NoError(t, json.Unmarshal(v, &id))
		recs[i] = kafka.Record{Topic: topic, Key: []byte(id.AuditID), Value: v, Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte(cluster)},
			{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
			{Key: schemas.HeaderReceivedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
			{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
		}}
	}
	require.NoError(t, prod.Produce(ctx, recs...))
}
