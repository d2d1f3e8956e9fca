package localtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/schemas"
)

// ClusterFalco holds falco's k8s_audit trace files (minikube, 2018-2019):
// exec and attach into pods, RBAC changes, anonymous requests, secrets,
// privileged pods. Events without a stage (unstorable) are left out.
const ClusterFalco = "minikube-falco"

// Falco returns the events of testdata/public-audit/falco as ProcessedEvents
// of ClusterFalco, in file-name order. A file holds one event or JSON lines.
func Falco(tb testing.TB) []Event {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(Dir(tb), "falco", "*.json"))
	require.NoError(tb, err)
	require.NotEmpty(tb, files)
	sort.Strings(files)
	var out []Event
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(tb, err)
		if filepath.Base(f) == "fal_01_003.json" {
			continue // a malformed-input regression case, not an event (SOURCES.md)
		}
		// One pretty-printed event or several JSON lines: a stream of values.
		dec := json.NewDecoder(bytes.NewReader(raw))
		for {
			var v json.RawMessage
			if err := dec.Decode(&v); err == io.EOF {
				break
			} else {
				require.NoError(tb, err, "decode %s", f)
			}
			e := wrap(tb, v, ClusterFalco, f)
			if e.Stage == "" || e.AuditID == "" {
				continue
			}
			out = append(out, e)
		}
	}
	require.NotEmpty(tb, out)
	return out
}

// Cordon returns a synthetic event, clearly not from a real cluster: what
// `kubectl cordon node-1` records (a patch of nodes whose request body sets
// spec.unschedulable), for TKE's published example query
// `objectRef.resource:nodes AND requestObject:unschedulable`, which no public
// fixture exercises. It is built on a real GKE patch event so that every
// other field is realistic.
func Cordon(tb testing.TB) Event {
	tb.Helper()
	var base schemas.ProcessedEvent
	for _, e := range GKE(tb) {
		if e.Verb == "patch" {
			base = e.ProcessedEvent
			break
		}
	}
	require.NotEmpty(tb, base.AuditID, "no GKE patch event to build the cordon event on")
	base.AuditID = "00000000-cord-0000-0000-synthetic001"
	base.ObjectRef = &schemas.ObjectReference{Resource: "nodes", Name: "node-1", APIVersion: "v1"}
	base.RequestURI = "/api/v1/nodes/node-1"
	base.RequestObject = json.RawMessage(`{"spec":{"unschedulable":true}}`)
	base.ResponseObject = nil
	base.UserAgent = "kubectl/v1.29.0 (linux/amd64) kubernetes/abcdef0"
	base.StageTimestamp = base.StageTimestamp.Add(time.Second)
	base.RequestReceivedTimestamp = base.StageTimestamp.Add(-20 * time.Millisecond)
	base.Pipeline.Cluster = "tke-synthetic"
	b, err := json.Marshal(base)
	require.NoError(tb, err)
	return Event{ProcessedEvent: base, JSON: b, Raw: b}
}
