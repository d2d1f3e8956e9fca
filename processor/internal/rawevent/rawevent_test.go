package rawevent_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/auditpipe/auditpipe/processor/internal/rawevent"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// FuzzParse: for any input Parse accepts, the typed view is what
// encoding/json reads from the input when it takes the last of repeated
// members (bodies as their bytes), and
// encoding it back unchanged gives the input as a JSON value plus the
// auditpipe member. Seeded with every public fixture.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("../../../testdata/public-audit/*/*.json*")
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				f.Add(line)
			}
		}
	}
	for _, s := range []string{
		`{"auditID":"a","stage":"s","verb":"v","requestObject":null,"RequestObject":{"x":1}}`,
		`{"auditID":"a","stage":"s","verb":"v","requestObject":{"a":1},"requestObject":[2]}`,
		`{"auditID":"a","stage":"s","verb":"v","request\u004fbject":{"a":1},"level":"Metadata"}`,
		`{"auditID":"a","stage":"s","verb":"v","objectRef":{"resource":"x"},"objectRef":{"name":"y"}}`,
		`{"auditID":"a","stage":"s","verb":"v","annotations":{"a":"b","a":"c"},"x":1.50}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		doc, ev, reason := rawevent.Parse(value)
		if reason != "" {
			return
		}
		// The oracle: encoding/json, after taking the last of repeated
		// top-level members (it would merge repeated objects into one
		// struct, which is what Parse must not do).
		var top map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(value, &top))
		last, err := json.Marshal(top)
		require.NoError(t, err)
		var want schemas.Event
		require.NoError(t, json.Unmarshal(last, &want))
		want.RequestObject, want.ResponseObject = top["requestObject"], top["responseObject"]
		if len(doc.Cut()) == 0 {
			requireSameEvent(t, want, ev)
		}
		pe := schemas.ProcessedEvent{Event: ev}
		out, err := doc.Encode(&pe)
		require.NoError(t, err)
		var in, got map[string]any
		require.NoError(t, json.Unmarshal(value, &in))
		require.NoError(t, json.Unmarshal(out, &got))
		require.Contains(t, got, schemas.PipelineKey)
		delete(got, schemas.PipelineKey)
		if len(doc.Cut()) == 0 {
			require.Equal(t, in, got, "%s -> %s", value, out)
		}
	})
}

// requireSameEvent compares events with bodies as JSON values (the typed
// view keeps them as bytes, encoding/json as bytes too, but the last of
// repeated keys inside them is resolved only in the view).
func requireSameEvent(t *testing.T, want, got schemas.Event) {
	t.Helper()
	for _, b := range []*[2]json.RawMessage{{want.RequestObject, got.RequestObject}, {want.ResponseObject, got.ResponseObject}} {
		require.Equal(t, b[0] == nil, b[1] == nil)
		if b[0] != nil {
			var x, y any
			require.NoError(t, json.Unmarshal(b[0], &x))
			require.NoError(t, json.Unmarshal(b[1], &y))
			require.Equal(t, x, y)
		}
	}
	want.RequestObject, want.ResponseObject, got.RequestObject, got.ResponseObject = nil, nil, nil, nil
	require.Equal(t, want, got)
}

func TestEncodeEdits(t *testing.T) {
	in := []byte(`{"level":"RequestResponse", "auditID":"a","stage":"s","verb":"v","requestObject":{"a":1},"x":0.10,` +
		`"responseObject":{"b":2},"annotations":{"k":"v"},"stageTimestamp":"2026-01-01T00:00:00.100000Z"}`)
	doc, ev, reason := rawevent.Parse(in)
	require.Empty(t, reason)
	pe := schemas.ProcessedEvent{Event: ev}
	pe.Level, pe.ResponseObject, pe.RequestObject = "Request", nil, json.RawMessage(`{"a":"auditpipe:redacted"}`)
	out, err := doc.Encode(&pe)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(out, []byte(`{"level":"Request","auditID":"a","stage":"s","verb":"v","requestObject":{"a":"auditpipe:redacted"},"x":0.10,`+
		`"annotations":{"k":"v"},"stageTimestamp":"2026-01-01T00:00:00.100000Z","auditpipe":{`)), "%s", out)

	pe.Pipeline.Truncated = true
	out, err = doc.Encode(&pe)
	require.NoError(t, err)
	require.Contains(t, string(out), `"annotations":{"k":"v","audit.k8s.io/truncated":"true"}`)

	for ann, want := range map[string]string{
		`null`: `{"audit.k8s.io/truncated":"true"}`,
		`{}`:   `{"audit.k8s.io/truncated":"true"}`,
		`{"audit.k8s.io/truncated":"false","a":"b"}`: `{"audit.k8s.io/truncated":"true","a":"b"}`,
		`{"audit.k8s.io\/truncated":"false"}`:        `{"audit.k8s.io\/truncated":"true"}`,
	} {
		doc, ev, reason := rawevent.Parse([]byte(`{"auditID":"a","stage":"s","verb":"v","level":"Metadata","annotations":` + ann + `}`))
		require.Empty(t, reason)
		pe := schemas.ProcessedEvent{Event: ev, Pipeline: schemas.Pipeline{Truncated: true}}
		out, err := doc.Encode(&pe)
		require.NoError(t, err)
		require.Contains(t, string(out), `"annotations":`+want, ann)
	}
	// No annotations member: one is added.
	doc, ev, _ = rawevent.Parse([]byte(`{"auditID":"a","stage":"s","verb":"v","level":"Metadata"}`))
	pe = schemas.ProcessedEvent{Event: ev, Pipeline: schemas.Pipeline{Truncated: true}}
	out, err = doc.Encode(&pe)
	require.NoError(t, err)
	require.Contains(t, string(out), `"annotations":{"audit.k8s.io/truncated":"true"},"auditpipe":`)
}
