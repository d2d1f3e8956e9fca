package pipeline_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/processor/pipeline"
)

// The oracle of these tests is JSON equality as encoding/json sees it
// (values decoded with UseNumber), re-encoded by the test's own encoder
// below in several spellings. The hash must not move for a spelling and
// must move for every change of a value.

func hash(tb testing.TB, raw []byte) string {
	tb.Helper()
	h, err := pipeline.ContentHash(raw)
	require.NoError(tb, err, "%s", raw)
	return h
}

func decodeAny(tb testing.TB, raw []byte) any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	require.NoError(tb, dec.Decode(&v))
	return v
}

// spelling says how encode writes a value.
type spelling struct {
	reverseKeys bool // members in reverse sorted order
	escapeAll   bool // every string character as a \u escape
	indent      string
}

func encode(v any, sp spelling) []byte {
	var b bytes.Buffer
	writeValue(&b, v, sp, 0)
	return b.Bytes()
}

func writeValue(b *bytes.Buffer, v any, sp spelling, depth int) {
	nl := func(d int) {
		if sp.indent != "" {
			b.WriteString("\n" + strings.Repeat(sp.indent, d))
		}
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if sp.reverseKeys {
			slices.Reverse(keys)
		}
		b.WriteString("{")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(",")
			}
			nl(depth + 1)
			writeString(b, k, sp)
			b.WriteString(": ")
			writeValue(b, v[k], sp, depth+1)
		}
		if len(keys) > 0 {
			nl(depth)
		}
		b.WriteString("}")
	case []any:
		b.WriteString("[")
		for i, e := range v {
			if i > 0 {
				b.WriteString(" , ")
			}
			nl(depth + 1)
			writeValue(b, e, sp, depth+1)
		}
		b.WriteString("]")
	case string:
		writeString(b, v, sp)
	case json.Number:
		b.WriteString(v.String())
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case nil:
		b.WriteString("null")
	default:
		panic(fmt.Sprintf("unexpected %T", v))
	}
}

func writeString(b *bytes.Buffer, s string, sp spelling) {
	if !sp.escapeAll {
		j, _ := json.Marshal(s) // escapes <, > and & as \u003c...: another spelling too
		b.Write(j)
		return
	}
	b.WriteString(`"`)
	for _, r := range s {
		if r > 0xFFFF {
			hi, lo := (r-0x10000)>>10+0xD800, (r-0x10000)&0x3FF+0xDC00
			fmt.Fprintf(b, `\u%04X\u%04x`, hi, lo)
			continue
		}
		fmt.Fprintf(b, `\u%04x`, r)
	}
	b.WriteString(`"`)
}

// fixtureEvents returns the raw bytes of the public audit events.
func fixtureEvents(tb testing.TB) [][]byte {
	var out [][]byte
	for _, f := range audittest.Load(tb, audittest.Dir(tb)) {
		if f.Event != nil {
			out = append(out, f.Raw)
		}
	}
	require.Greater(tb, len(out), 100)
	return out
}

// TestContentHashIgnoresSpelling: the same event written with other
// whitespace, member order, escapes, and with or without the top-level
// kind and apiVersion (a webhook EventList item against an audit.log
// line) has the same hash.
func TestContentHashIgnoresSpelling(t *testing.T) {
	for i, raw := range fixtureEvents(t) {
		want := hash(t, raw)
		v := decodeAny(t, raw)
		for _, sp := range []spelling{{}, {reverseKeys: true}, {escapeAll: true}, {indent: "\t"}, {reverseKeys: true, escapeAll: true, indent: "  "}} {
			require.Equal(t, want, hash(t, encode(v, sp)), "fixture %d spelled %+v", i, sp)
		}
		var ind bytes.Buffer
		require.NoError(t, json.Indent(&ind, raw, " ", "    "))
		require.Equal(t, want, hash(t, ind.Bytes()), "fixture %d indented", i)

		m := v.(map[string]any)
		item := map[string]any{}
		for k, x := range m {
			if k != "kind" && k != "apiVersion" {
				item[k] = x
			}
		}
		require.Equal(t, want, hash(t, encode(item, spelling{})), "fixture %d without kind and apiVersion", i)
		item["kind"], item["apiVersion"] = "Event", "audit.k8s.io/v1"
		require.Equal(t, want, hash(t, encode(item, spelling{reverseKeys: true})), "fixture %d with kind and apiVersion", i)
	}
}

// TestContentHashSeesEveryValue changes one value at a time (every leaf,
// every member removed, every array element dropped) in the first
// fixtures: each change gives a new hash.
func TestContentHashSeesEveryValue(t *testing.T) {
	all := fixtureEvents(t)
	n := 0
	for i, raw := range all[:min(len(all), 30)] {
		orig := hash(t, raw)
		seen := map[string]string{orig: "original"}
		v := decodeAny(t, raw)
		mutations(v, "", func(path string) {
			n++
			h := hash(t, encode(v, spelling{}))
			prev, dup := seen[h]
			require.False(t, dup, "fixture %d: changing %s gives the hash of %s", i, path, prev)
			seen[h] = path
		})
		require.Equal(t, orig, hash(t, encode(v, spelling{})), "fixture %d: mutations were undone", i)
	}
	require.Greater(t, n, 1000, "mutations tried")
}

// mutations changes v in place one value at a time, calls check, and
// undoes the change. Top-level kind and apiVersion are exempt (ignored by
// design).
func mutations(v any, path string, check func(path string)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range x {
				if !yield(k) {
					return
				}
			}
		}) {
			p := path + "/" + k
			if path == "" && (k == "kind" || k == "apiVersion") {
				continue
			}
			old := x[k]
			if nv, ok := changed(old); ok {
				x[k] = nv
				check(p)
				x[k] = old
			}
			delete(x, k)
			check(p + " (removed)")
			x[k] = old
			mutations(old, p, check)
		}
	case []any:
		for i := range x {
			p := path + "/" + strconv.Itoa(i)
			old := x[i]
			if nv, ok := changed(old); ok {
				x[i] = nv
				check(p)
				x[i] = old
			}
			mutations(old, p, check)
		}
	}
}

// changed returns another value for a leaf.
func changed(v any) (any, bool) {
	switch v := v.(type) {
	case string:
		return v + "x", true
	case json.Number:
		return json.Number(v.String() + "1"), true // 5 -> 51, 1.5 -> 1.51
	case bool:
		return !v, true
	case nil:
		return false, true
	}
	return nil, false
}

func TestContentHashCases(t *testing.T) {
	same := [][]string{
		{`{"a":1}`, `{"a":1.0}`, `{"a":1e0}`, `{"a":10E-1}`, `{"a":0.1e1}`, ` { "a" : 1 } `},
		{`{"a":-0}`, `{"a":0}`, `{"a":-0.0}`},
		{`{"a":"A<"}`, `{"a":"\u0041\u003c"}`, `{"a":"\u0041\u003C"}`},
		{`{"a":"😀"}`, `{"a":"\ud83d\ude00"}`},
		{`{"a":"/"}`, `{"a":"\/"}`},
		{`{"a":1,"b":2}`, `{"b":2,"a":1}`},
		{`{"kind":"Event","apiVersion":"audit.k8s.io/v1","a":1}`, `{"a":1}`, `{"a":1,"kind":"Event"}`},
	}
	for _, group := range same {
		want := hash(t, []byte(group[0]))
		for _, s := range group[1:] {
			require.Equal(t, want, hash(t, []byte(s)), "%s and %s", group[0], s)
		}
	}
	// Pairwise different.
	different := []string{
		`{"a":1}`, `{"a":2}`, `{"a":"1"}`, `{"a":true}`, `{"a":false}`, `{"a":null}`,
		`{"a":[]}`, `{"a":{}}`, `{"a":""}`, `{"a":[1]}`, `{"a":[[1]]}`, `{"a":{"b":1}}`,
		`{"a":["b","c"]}`, `{"a":["bc"]}`, `{"a":["c","b"]}`, `{"ab":"c"}`, `{"a":"bc"}`,
		`{"a":1,"a":2}`, `{"a":2,"a":1}`, `{}`, `{"A":1}`,
		`{"a":12345678901234567890}`, `{"a":12345678901234567891}`,
		`{"a":1.5}`, `{"a":1.25}`,
		"{\"a\":\"\xff\"}", "{\"a\":\"\xfe\"}", `{"a":"\ud800"}`, `{"a":"\ufffd"}`, `{"a":"\udc00"}`,
		`{"x":{"kind":"Event"}}`, `{"x":{}}`, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","a":3}`,
	}
	seen := map[string]string{}
	for _, s := range different {
		h := hash(t, []byte(s))
		prev, dup := seen[h]
		require.False(t, dup, "%s and %s have the same hash", s, prev)
		seen[h] = s
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{`, `{"a"}`, `{"a":1,}`, `{"a":1} x`, `{"a":tru}`, `{"a":"\x"}`, `{"a":"\u12"}`} {
		_, err := pipeline.ContentHash([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
	_, err := pipeline.ContentHash([]byte(`{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`))
	require.Error(t, err, "nesting over encoding/json's limit")
}

func BenchmarkContentHash(b *testing.B) {
	all := fixtureEvents(b)
	var size int
	for _, raw := range all {
		size += len(raw)
	}
	b.Run("fixtures", func(b *testing.B) {
		b.SetBytes(int64(size / len(all)))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := pipeline.ContentHash(all[i%len(all)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("requestresponse-22KB", func(b *testing.B) {
		ev := requestResponseEvent(b, 22<<10)
		b.SetBytes(int64(len(ev)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pipeline.ContentHash(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
