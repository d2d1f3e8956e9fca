// Package audittest loads the real audit events of testdata/public-audit
// and drives kube-apiserver's own webhook audit backend
// (k8s.io/apiserver/plugin/pkg/audit/webhook) as the client of a receiver,
// so tests send exactly what an apiserver sends.
package audittest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
)

// Fixture is one JSON value read from a fixture file.
type Fixture struct {
	// File is the path relative to the fixture root, Index the position of
	// the value in the file.
	File  string
	Index int
	// Raw is the value's bytes as stored.
	Raw []byte
	// Event is the decoded event, nil when Raw is not an audit event
	// (Problem says why).
	Event   *auditinternal.Event
	Problem string
}

// Dir returns the absolute path of the repository's testdata/public-audit.
func Dir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("audittest: cannot locate source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "public-audit")
}

// Load reads every JSON value under root (JSON files holding one event,
// JSON-lines files holding many) except the GKE log entries, which are not
// audit events. It returns valid events and problem values alike.
func Load(tb testing.TB, root string) []Fixture {
	tb.Helper()
	var out []Fixture
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".json") && !strings.HasSuffix(path, ".jsonl") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if strings.Contains(rel, "log_entries") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out = append(out, decodeValues(rel, data)...)
		return nil
	})
	if err != nil {
		tb.Fatalf("audittest: load %s: %v", root, err)
	}
	return out
}

// Events returns the valid events of fixtures.
func Events(fixtures []Fixture) []*auditinternal.Event {
	var evs []*auditinternal.Event
	for _, f := range fixtures {
		if f.Event != nil {
			evs = append(evs, f.Event)
		}
	}
	return evs
}

// Identity is the natural key of a stored event.
type Identity struct{ Cluster, AuditID, Stage string }

// Distinct returns the distinct (auditID, stage) pairs of evs for cluster:
// the fixtures repeat some requests, and the pipeline stores each once.
func Distinct(cluster string, evs []*auditinternal.Event) map[Identity]bool {
	ids := map[Identity]bool{}
	for _, e := range evs {
		ids[Identity{cluster, string(e.AuditID), string(e.Stage)}] = true
	}
	return ids
}

func decodeValues(file string, data []byte) []Fixture {
	var out []Fixture
	dec := json.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			// The rest of the file is not JSON (fal_01_003.json on purpose).
			out = append(out, Fixture{File: file, Index: i, Raw: data[dec.InputOffset():], Problem: "not JSON: " + err.Error()})
			return out
		}
		f := Fixture{File: file, Index: i, Raw: raw}
		f.Event, f.Problem = toInternal(raw)
		out = append(out, f)
	}
}

// toInternal decodes a v1 or v1beta1 event into the apiserver's internal
// type, which the webhook backend encodes again as v1. v1beta1 is read as
// v1: the fields the pipeline uses are the same.
func toInternal(raw []byte) (*auditinternal.Event, string) {
	var v1 auditv1.Event
	if err := json.Unmarshal(raw, &v1); err != nil {
		return nil, "not an audit event: " + err.Error()
	}
	if v1.Kind != "Event" || v1.AuditID == "" || v1.Stage == "" {
		return nil, fmt.Sprintf("not an audit event: kind %q, auditID %q, stage %q", v1.Kind, v1.AuditID, v1.Stage)
	}
	var ev auditinternal.Event
	if err := audit.Scheme.Convert(&v1, &ev, nil); err != nil {
		return nil, "convert to internal: " + err.Error()
	}
	return &ev, ""
}

// SortByTime orders events by stage timestamp, then auditID and stage.
func SortByTime(evs []*auditinternal.Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if !a.StageTimestamp.Equal(&b.StageTimestamp) {
			return a.StageTimestamp.Before(&b.StageTimestamp)
		}
		if a.AuditID != b.AuditID {
			return a.AuditID < b.AuditID
		}
		return a.Stage < b.Stage
	})
}

// Shift moves every event's timestamps so the newest is at now, keeping
// their spacing: stored events then fall inside "the last hour" queries.
func Shift(evs []*auditinternal.Event, now time.Time) {
	var newest time.Time
	for _, e := range evs {
		if e.StageTimestamp.Time.After(newest) {
			newest = e.StageTimestamp.Time
		}
	}
	d := now.Sub(newest)
	for _, e := range evs {
		e.StageTimestamp.Time = e.StageTimestamp.Time.Add(d)
		e.RequestReceivedTimestamp.Time = e.RequestReceivedTimestamp.Time.Add(d)
	}
}
