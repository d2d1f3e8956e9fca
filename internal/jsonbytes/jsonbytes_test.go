package jsonbytes_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/stretchr/testify/require"
)

var seeds = []string{
	`{}`, ` { "a" : 1 , "b":[1,2,{"c":null}] } `, `{"a":"x\"y\\z\u00e9\n"}`, `[1,2]`, `"s"`, `-0.5e+10`, `true`, `null`,
	`{"a":1,}`, `{"a" 1}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":tru}`, `{"a":1}x`,
	`{"a":"\u12"}`, `[1,]`, `{"a":[}`, ``, ` `, `{"a":1e}`, `{"\u0061":1,"a":2}`,
}

// FuzzValidMatchesEncodingJSON: the scanner accepts exactly what
// encoding/json accepts.
func FuzzValidMatchesEncodingJSON(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob("../../testdata/public-audit/falco/*.json")
	for _, file := range files[:10] {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		require.Equal(t, json.Valid(b), jsonbytes.Valid(b), "%q", b)
		err := jsonbytes.Members(b, func(jsonbytes.Member) {})
		if json.Valid(b) {
			if len(b) > 0 && firstNonWS(b) == '{' {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, jsonbytes.ErrNotObject)
			}
		} else {
			require.Error(t, err)
		}
	})
}

func firstNonWS(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

// FuzzRemove: removing members by key leaves valid JSON equal to the
// object without them.
func FuzzRemove(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":2,"c":3}`, `{"b":2}`, `{ "a" : [1] , "b" : {"a":1} }`, `{"a":1,"a":2,"x":3}`, `{}`, `{"x":1,"a":2}`} {
		f.Add([]byte(s), "a", "b")
	}
	f.Fuzz(func(t *testing.T, b []byte, k1, k2 string) {
		var m map[string]json.RawMessage
		// encoding/json decodes invalid UTF-8 in keys to U+FFFD, so the
		// map could not be compared by key.
		if !utf8.Valid(b) || json.Unmarshal(b, &m) != nil || m == nil {
			return
		}
		out, err := jsonbytes.Remove(b, func(m jsonbytes.Member) bool {
			return !m.KeyEscaped && (string(m.Key) == k1 || string(m.Key) == k2)
		})
		require.NoError(t, err)
		var got map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(out, &got), "%q -> %q", b, out)
		// Escaped keys are kept even when they decode to k1: compare on
		// what the callback could see.
		for k := range m {
			if (k == k1 || k == k2) && !hasEscapedKey(t, b, k) {
				delete(m, k)
			}
		}
		require.Equal(t, len(m), len(got), "%q -> %q", b, out)
	})
}

func hasEscapedKey(t *testing.T, b []byte, key string) bool {
	found := false
	require.NoError(t, jsonbytes.Members(b, func(m jsonbytes.Member) {
		if m.KeyEscaped {
			var k string
			_ = json.Unmarshal(append(append([]byte{'"'}, m.Key...), '"'), &k)
			if k == key {
				found = true
			}
		}
	}))
	return found
}

func TestMembers(t *testing.T) {
	b := []byte(` {"kind":"Event", "requestObject" : {"a":[1,{"b":"}"}]},"x\"y":null}`)
	var keys []string
	var values []string
	require.NoError(t, jsonbytes.Members(b, func(m jsonbytes.Member) {
		keys = append(keys, string(m.Key))
		values = append(values, string(b[m.ValueStart:m.ValueEnd]))
	}))
	require.Equal(t, []string{"kind", "requestObject", `x\"y`}, keys)
	require.Equal(t, []string{`"Event"`, `{"a":[1,{"b":"}"}]}`, "null"}, values)

	err := jsonbytes.Members([]byte(`{"a":1,"b":[1,2}`), nil)
	var se *jsonbytes.SyntaxError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 15, se.Offset)
}
