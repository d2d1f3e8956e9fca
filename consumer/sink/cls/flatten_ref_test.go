package cls

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// The reference flattener: the first, obviously-correct implementation
// (decode level by level into maps). The one-pass walker must produce the
// same key/values.
func refObject(f *Flat, prefix string, obj map[string]json.RawMessage, depth int) error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys) // stable output: golden-testable, diff-able
	for _, k := range keys {
		key := sanitizeKey(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if err := refValue(f, key, obj[k], depth+1); err != nil {
			return err
		}
	}
	return nil
}

func refValue(f *Flat, key string, raw json.RawMessage, depth int) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case 'n': // null: CLS has no null; an absent key says the same
		return nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		f.add(key, s)
	case '{':
		if jsonValued[key] || depth >= maxDepth {
			return f.addJSON(key, raw)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if len(obj) == 0 {
			return nil
		}
		return refObject(f, key, obj, depth)
	case '[':
		return f.addJSON(key, raw)
	default: // number or bool, already in canonical text
		f.add(key, string(raw))
	}
	return nil
}

func refFlatten(t testing.TB, value []byte) []KV {
	t.Helper()
	var f Flat
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(value, &top))
	require.NoError(t, refObject(&f, "", top, 0))
	return sorted(f.Contents)
}

func sorted(kvs []KV) []KV {
	out := slices.Clone(kvs)
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key+"\x00"+a.Value, b.Key+"\x00"+b.Value) })
	return out
}

func TestWalkerMatchesReference(t *testing.T) {
	var docs [][]byte
	for _, e := range localtest.All(t) {
		docs = append(docs, e.JSON)
	}
	docs = append(docs, eventgen.Event("c", "a", 5000, time.Now()))
	// Whitespace, escapes, nesting past maxDepth, nulls, numbers.
	docs = append(docs, []byte(` { "auditID" : "a\"1\u00e9" , "stage":"s", "auditpipe": {"cluster": "c"},
		"n": null, "x": -1.5e3, "t": true, "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}},
		"arr": [ {"a": "]"}, "}" ], "empty": {} } `))
	for i, d := range docs {
		var f Flat
		w := walker{f: &f, data: d}
		w.skipWS()
		require.NoError(t, w.object("", 0), "doc %d", i)
		require.Equal(t, refFlatten(t, d), sorted(f.Contents), "doc %d", i)
	}
	require.Greater(t, len(docs), 10)
}

func TestWalkerRejectsBrokenJSON(t *testing.T) {
	for _, d := range []string{
		`{"a":}`, `{"a" 1}`, `{"a":1,}`, `{"a":"x`, `{"a":[1,2}`, `{"a":tru}`, `{"a":{"b":1}`,
		`{"requestObject":{"a":1,}}`, "{\"a\":\"\x01\"}", `{"a":1} x`, `{a:1}`,
	} {
		_, err := Flatten([]byte(d), time.Time{})
		require.Error(t, err, d)
		require.NotContains(t, err.Error(), "missing", "%s: %v", d, err)
	}
}
