// Package localtest loads real, public Kubernetes audit events from the
// repository's testdata/public-audit and wraps them as ProcessedEvents, for
// the tests of the local store and of everything that reads from it. It is a
// test helper: import it only from _test.go files.
package localtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/schemas"
)

// Clusters the fixtures are assigned to.
const (
	// ClusterGKE holds the 25 events of stackdriver-webhook-bridge: create,
	// delete and patch by mark.stemm@sysdig.com and two controllers,
	// 2020-01-07 to 2020-01-11, Request/RequestResponse level.
	ClusterGKE = "gke-prod"
	// ClusterKind holds the 37 events of audit2rbac's demo.v1.jsonl: get and
	// list by system:admin impersonating bob, Metadata level, 2017-09-11.
	ClusterKind = "kind-dev"
)

// Event is one fixture: the ProcessedEvent and its JSON encoding.
type Event struct {
	schemas.ProcessedEvent
	JSON []byte
	// Raw is the JSON as the processor forwards it: the apiserver's bytes
	// with every field they hold, including those outside the typed schema
	// (kind's legacy timestamp and metadata), plus the auditpipe key. JSON
	// is the typed re-encoding, which drops such fields.
	Raw []byte
}

// Raw returns events with JSON replaced by Raw.
func Raw(events []Event) []Event {
	out := make([]Event, len(events))
	for i, e := range events {
		e.JSON = e.Raw
		out[i] = e
	}
	return out
}

// splice returns raw (a JSON object) with the pipeline key added and, for
// events that predate stageTimestamp, the times the typed event was given.
func splice(tb testing.TB, raw []byte, ev schemas.ProcessedEvent) []byte {
	tb.Helper()
	var buf bytes.Buffer
	require.NoError(tb, json.Compact(&buf, raw))
	out := bytes.TrimSuffix(buf.Bytes(), []byte("}"))
	var top map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(raw, &top))
	add := func(key string, v any) {
		b, err := json.Marshal(v)
		require.NoError(tb, err)
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, key...)
		out = append(out, '"', ':')
		out = append(out, b...)
	}
	if _, ok := top["stageTimestamp"]; !ok {
		add("stageTimestamp", ev.StageTimestamp)
	}
	if _, ok := top["requestReceivedTimestamp"]; !ok {
		add("requestReceivedTimestamp", ev.RequestReceivedTimestamp)
	}
	add(schemas.PipelineKey, ev.Pipeline)
	return append(out, '}')
}

// Dir returns testdata/public-audit, found from this file's location so
// that tests in any package of the module can use it.
func Dir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	require.True(tb, ok, "locate localtest source file")
	// consumer/sink/local/localtest -> repository root.
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "testdata", "public-audit")
	_, err := os.Stat(filepath.Join(dir, "SOURCES.md"))
	require.NoError(tb, err, "public audit fixtures not found at %s", dir)
	return dir
}

// GKE returns the stackdriver-webhook-bridge events as ProcessedEvents of
// ClusterGKE, in file-name order.
func GKE(tb testing.TB) []Event {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(Dir(tb), "stackdriver-webhook-bridge", "k8s_audit_events", "*.json"))
	require.NoError(tb, err)
	require.NotEmpty(tb, files)
	sort.Strings(files)
	var out []Event
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(tb, err)
		out = append(out, wrap(tb, raw, ClusterGKE, f))
	}
	return out
}

// Kind returns audit2rbac's demo.v1.jsonl events as ProcessedEvents of
// ClusterKind. The file predates stageTimestamp (it has the older
// "timestamp"), so stageTimestamp is taken from "timestamp" when missing.
func Kind(tb testing.TB) []Event {
	tb.Helper()
	f, err := os.Open(filepath.Join(Dir(tb), "audit2rbac", "demo.v1.jsonl"))
	require.NoError(tb, err)
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		out = append(out, wrap(tb, line, ClusterKind, f.Name()))
	}
	require.NoError(tb, sc.Err())
	require.NotEmpty(tb, out)
	return out
}

// All returns GKE then Kind.
func All(tb testing.TB) []Event {
	tb.Helper()
	return append(GKE(tb), Kind(tb)...)
}

// Values returns the JSON encodings of events, as Write takes them.
func Values(events []Event) [][]byte {
	out := make([][]byte, len(events))
	for i, e := range events {
		out[i] = e.JSON
	}
	return out
}

func wrap(tb testing.TB, raw []byte, cluster, source string) Event {
	tb.Helper()
	var ev schemas.ProcessedEvent
	require.NoError(tb, json.Unmarshal(raw, &ev), "decode %s", source)
	if ev.StageTimestamp.IsZero() {
		var old struct {
			Timestamp time.Time `json:"timestamp"`
		}
		require.NoError(tb, json.Unmarshal(raw, &old), "decode %s", source)
		ev.StageTimestamp = old.Timestamp
		if ev.RequestReceivedTimestamp.IsZero() {
			ev.RequestReceivedTimestamp = old.Timestamp
		}
	}
	ev.Pipeline = schemas.Pipeline{
		SchemaVersion: schemas.SchemaVersion,
		Cluster:       cluster,
		Source:        schemas.SourceFile,
		ReceivedAt:    ev.StageTimestamp.Add(50 * time.Millisecond),
		ProcessedAt:   ev.StageTimestamp.Add(80 * time.Millisecond),
		OriginalLevel: ev.Level,
		Origin:        schemas.Origin{Topic: schemas.DefaultRawTopic},
	}
	b, err := json.Marshal(ev)
	require.NoError(tb, err)
	return Event{ProcessedEvent: ev, JSON: b, Raw: splice(tb, raw, ev)}
}
