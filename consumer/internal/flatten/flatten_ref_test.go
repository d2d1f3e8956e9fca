package flatten

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
func refObject(f *[]KV, prefix string, obj map[string]json.RawMessage, depth int) error {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys) // stable output: golden-testable, diff-able
	for _, k := range keys {
		key := SanitizeKey(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if err := refValue(f, key, obj[k], depth+1); err != nil {
			return err
		}
	}
	return nil
}

func refValue(f *[]KV, key string, raw json.RawMessage, depth int) error {
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
		*f = append(*f, KV{key, s})
	case '{':
		if jsonValued[key] || depth >= MaxDepth {
			return addJSON(f, key, raw)
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
		return addJSON(f, key, raw)
	default: // number or bool, already in canonical text
		*f = append(*f, KV{key, string(raw)})
	}
	return nil
}

// KV is one key/value as Walk emits it.
type KV struct{ Key, Value string }

func addJSON(f *[]KV, key string, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	*f = append(*f, KV{key, buf.String()})
	return nil
}

func refFlatten(t testing.TB, value []byte) []KV {
	t.Helper()
	var f []KV
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(value, &top))
	require.NoError(t, refObject(&f, "", top, 0))
	return sorted(f)
}

func sorted(kvs []KV) []KV {
	out := slices.Clone(kvs)
	slices.SortFunc(out, func(a, b KV) int { return strings.Compare(a.Key+"\x00"+a.Value, b.Key+"\x00"+b.Value) })
	return out
}

func walkAll(t testing.TB, d []byte) []KV {
	t.Helper()
	var got []KV
	require.NoError(t, Walk(d, func(k, v string, _ Kind) error {
		got = append(got, KV{k, v})
		return nil
	}))
	return got
}

func testDocs(t testing.TB) [][]byte {
	var docs [][]byte
	for _, e := range append(localtest.All(t), localtest.Falco(t)...) {
		docs = append(docs, e.JSON)
	}
	docs = append(docs, eventgen.Event("c", "a", 5000, time.Now()))
	// Whitespace, escapes, nesting past MaxDepth, nulls, numbers, dotted
	// map keys, fields outside the typed schema.
	docs = append(docs, []byte(` { "auditID" : "a\"1\u00e9" , "stage":"s", "auditpipe": {"cluster": "c"},
		"n": null, "x": -1.5e3, "t": true, "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}},
		"arr": [ {"a": "]"}, "}" ], "empty": {},
		"user": {"username": "u", "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]}},
		"authenticationMetadata": {"impersonationConstraint": "x"}, "timestamp": "2017-09-11T19:55:05Z" } `))
	return docs
}

func TestWalkerMatchesReference(t *testing.T) {
	docs := testDocs(t)
	for i, d := range docs {
		require.Equal(t, refFlatten(t, d), sorted(walkAll(t, d)), "doc %d", i)
		var c bytes.Buffer
		require.NoError(t, json.Compact(&c, d))
		var compact []KV
		require.NoError(t, WalkCompact(c.Bytes(), func(k, v string, _ Kind) error {
			compact = append(compact, KV{k, v})
			return nil
		}))
		require.Equal(t, walkAll(t, d), compact, "doc %d compacted", i)
		var borrowed []KV
		require.NoError(t, WalkCompactString(c.String(), func(k, v string, _ Kind) error {
			borrowed = append(borrowed, KV{k, v})
			return nil
		}))
		require.Equal(t, compact, borrowed, "doc %d compacted, walked as a string", i)
	}
	require.Greater(t, len(docs), 10)
}

// Lookup must find exactly what Walk emits, by the same key, and nothing
// else: it is how the store reads the fields CLS receives.
func TestLookupAgreesWithWalk(t *testing.T) {
	for i, d := range testDocs(t) {
		var c bytes.Buffer
		require.NoError(t, json.Compact(&c, d))
		d = c.Bytes()
		first := map[string]string{}
		for _, kv := range walkAll(t, d) {
			if _, dup := first[kv.Key]; !dup {
				first[kv.Key] = kv.Value
			}
			// Every proper prefix of an emitted key is an object, never
			// a value.
			for j := range len(kv.Key) {
				if kv.Key[j] == '.' {
					p := kv.Key[:j]
					if _, emitted := first[p]; !emitted {
						_, _, found := Lookup(d, p)
						require.False(t, found, "doc %d: %s is an object", i, p)
					}
				}
			}
		}
		for k, want := range first {
			got, _, found := Lookup(d, k)
			require.True(t, found, "doc %d: %s", i, k)
			require.Equal(t, want, got, "doc %d: %s", i, k)
		}
		for _, k := range []string{"nope", "user.nope", "auditpipe.nope.x", "requestObject.kind", "n"} {
			_, _, found := Lookup(d, k)
			require.False(t, found, "doc %d: %s", i, k)
		}
	}
}

func TestWalkerRejectsBrokenJSON(t *testing.T) {
	for _, d := range []string{
		`{"a":}`, `{"a" 1}`, `{"a":1,}`, `{"a":"x`, `{"a":[1,2}`, `{"a":tru}`, `{"a":{"b":1}`,
		`{"requestObject":{"a":1,}}`, "{\"a\":\"\x01\"}", `{"a":1} x`, `{a:1}`, `[1]`, `nope`,
	} {
		err := Walk([]byte(d), func(string, string, Kind) error { return nil })
		require.Error(t, err, d)
	}
}
