package pipeline

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// FuzzDecodeMatchesEncodingJSON: the fast path (bodies kept as bytes)
// decodes every input to what encoding/json decodes, fails where it
// fails, and encode writes what encoding/json would, up to key order and
// the bodies' insignificant whitespace. Seeded with every public fixture.
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	files, err := filepath.Glob("../../testdata/public-audit/*/*.json*")
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
	f.Add([]byte(`{"auditID":"a","stage":"s","verb":"v","requestObject":null,"RequestObject":{"x":1}}`))
	f.Add([]byte(`{"auditID":"a","stage":"s","verb":"v","requestObject":{"a":1},"requestObject":[2]}`))
	f.Add([]byte(`{"auditID":"a","stage":"s","verb":"v","request\u004fbject":{"a":1}}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		fast, fr := decode(value)
		slow, sr := decodeSlow(value)
		require.Equal(t, sr == "", fr == "", "fast %q slow %q", fr, sr)
		if sr != "" {
			return
		}
		fb, err := encode(schemas.ProcessedEvent{Event: fast})
		require.NoError(t, err)
		sb, err := marshal(schemas.ProcessedEvent{Event: slow})
		require.NoError(t, err)
		var a, b any
		require.NoError(t, json.Unmarshal(fb, &a), "%s", fb)
		require.NoError(t, json.Unmarshal(sb, &b))
		require.Equal(t, b, a)
	})
}
