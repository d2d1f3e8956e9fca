package local_test

import (
	"bytes"
	"encoding/json"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
	"github.com/auditpipe/auditpipe/schemas"
)

// The oracle of the golden tests: CLS's documented rules, written here
// again, independently of the store and of consumer/internal/flatten and
// cql's word splitter, over the events decoded with encoding/json.

// oracleDelims are CLS's default delimiters, as ../shared/docs/cls.md
// lists them.
const oracleDelims = "@&()='\",;:<>[]{}/ \n\t\r"

func owords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return strings.ContainsRune(oracleDelims, r) })
}

// oevent is an event as CLS's index sees it: each key's values.
type oevent struct {
	localtest.Event
	fields map[string][]string
}

func oracleEvents(tb testing.TB, events []localtest.Event) []oevent {
	tb.Helper()
	out := make([]oevent, len(events))
	for i, e := range events {
		dec := json.NewDecoder(bytes.NewReader(e.JSON))
		dec.UseNumber()
		var top map[string]any
		require.NoError(tb, dec.Decode(&top))
		f := map[string][]string{}
		oflatten(f, "", top, 0)
		out[i] = oevent{Event: e, fields: f}
	}
	return out
}

// oflatten: objects become dotted keys, except bodies and status details
// and objects 6 levels deep, which stay JSON text like arrays; null is no
// value. (The fixtures' keys need no sanitizing.)
func oflatten(f map[string][]string, prefix string, obj map[string]any, depth int) {
	for k, v := range obj {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		switch v := v.(type) {
		case nil:
		case map[string]any:
			if key == "requestObject" || key == "responseObject" || key == "responseStatus.details" || depth+1 >= 6 {
				b, _ := json.Marshal(v)
				f[key] = append(f[key], string(b))
			} else {
				oflatten(f, key, v, depth+1)
			}
		case []any:
			b, _ := json.Marshal(v)
			f[key] = append(f[key], string(b))
		case string:
			f[key] = append(f[key], v)
		case json.Number:
			f[key] = append(f[key], v.String())
		case bool:
			if v {
				f[key] = append(f[key], "true")
			} else {
				f[key] = append(f[key], "false")
			}
		}
	}
}

// wordIs matches one word against a pattern word with * and ?.
func wordIs(word, pattern string) bool {
	ok, err := path.Match(strings.ToLower(pattern), word)
	return err == nil && ok
}

// has: some value of key has a word matching one of the patterns (an
// unquoted value split at delimiters is its words joined by OR).
func (e oevent) has(key string, patterns ...string) bool {
	for _, v := range e.fields[key] {
		for _, w := range owords(v) {
			for _, p := range patterns {
				if wordIs(w, p) {
					return true
				}
			}
		}
	}
	return false
}

// phrase: some value of key has the words consecutively.
func (e oevent) phrase(key string, ws ...string) bool {
	for _, v := range e.fields[key] {
		if containsRun(owords(v), ws) {
			return true
		}
	}
	return false
}

func containsRun(vw, ws []string) bool {
	for i := 0; i+len(ws) <= len(vw); i++ {
		ok := true
		for j, w := range ws {
			if vw[i+j] != strings.ToLower(w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// text: a full-text word, over every value but auditpipe's own.
func (e oevent) text(pattern string) bool {
	for k := range e.fields {
		if !strings.HasPrefix(k, schemas.PipelineKey+".") && e.has(k, pattern) {
			return true
		}
	}
	return false
}

func (e oevent) textPhrase(ws ...string) bool {
	for k := range e.fields {
		if !strings.HasPrefix(k, schemas.PipelineKey+".") && e.phrase(k, ws...) {
			return true
		}
	}
	return false
}

func (e oevent) present(key string) bool { return len(e.fields[key]) > 0 }

func (e oevent) value(key string) string {
	if v := e.fields[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
