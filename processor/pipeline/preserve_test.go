package pipeline_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// publicEvents returns every line of the public fixtures that the
// pipeline accepts as an event under the record-all policy.
func publicEvents(tb testing.TB) [][]byte {
	tb.Helper()
	files, err := filepath.Glob("../../testdata/public-audit/*/*.json*")
	require.NoError(tb, err)
	h := newHarness(tb, recordAll, pipeline.Config{})
	var out [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(tb, err)
		for _, line := range bytes.Split(b, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			h.prod.calls = nil
			require.NoError(tb, h.p.Handle(tb.Context(), batch(raw(1, line))))
			if recs := h.prod.records(); len(recs) == 1 && recs[0].Topic == schemas.DefaultEventsTopic {
				out = append(out, line)
			}
		}
	}
	require.Greater(tb, len(out), 100, "fixture events")
	return out
}

// objectSpan is an object inside a JSON document: where it is and the
// path to it ("" for the document, "/user", "/requestObject/spec/...").
type objectSpan struct {
	start, end int
	path       string
}

// objectSpans lists the objects of b with encoding/json's tokenizer,
// which reports byte offsets of the input.
func objectSpans(tb testing.TB, b []byte) []objectSpan {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		start  int
		object bool
		path   string
		key    string // object: the key of the value being read
		index  int    // array: the index of the next element
		expect bool   // object: the next token is a key
	}
	var stack []*frame
	var spans []objectSpan
	childPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.object {
			return f.path + "/" + f.key
		}
		return f.path + "/" + strconv.Itoa(f.index)
	}
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.expect = true
		} else {
			f.index++
		}
	}
	for {
		before := int(dec.InputOffset())
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return spans
		}
		require.NoError(tb, err)
		if len(stack) > 0 {
			if f := stack[len(stack)-1]; f.object && f.expect {
				if k, ok := tok.(string); ok {
					f.key, f.expect = k, false
					continue
				}
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			// InputOffset before Token may point at whitespace or a
			// separator: the container starts at its delimiter.
			start := before + bytes.IndexAny(b[before:], "{[")
			stack = append(stack, &frame{start: start, object: tok == json.Delim('{'), path: childPath(), expect: true})
		case json.Delim('}'), json.Delim(']'):
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if f.object {
				spans = append(spans, objectSpan{start: f.start, end: int(dec.InputOffset()), path: f.path})
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// insertMember adds member (`"key":value`) to the object b[s.start:s.end].
func insertMember(b []byte, s objectSpan, member string) []byte {
	obj := b[s.start:s.end]
	inner := bytes.TrimSpace(obj[1 : len(obj)-1])
	var out []byte
	out = append(out, b[:s.start]...)
	if len(inner) == 0 {
		out = append(out, "{"+member+"}"...)
	} else {
		out = append(out, obj[:len(obj)-1]...)
		out = append(out, ","+member+"}"...)
	}
	return append(out, b[s.end:]...)
}

// gen makes random JSON text in forms encoders differ on: escapes,
// number spellings, unicode, nesting.
type gen struct {
	r *rand.Rand
	n int // makes every generated key unique
}

func (g *gen) key() string {
	g.n++
	chars := []string{"a", "Z", "-", "_", ".", "/", "~", "é", "字", `\u0041`, `\"`, `\\`, " ", "😀"}
	var sb strings.Builder
	sb.WriteString("x" + strconv.Itoa(g.n) + "-")
	for range g.r.IntN(6) {
		sb.WriteString(chars[g.r.IntN(len(chars))])
	}
	return `"` + sb.String() + `"`
}

func (g *gen) str() string {
	parts := []string{"a", "é", `\u00e9`, `\/`, `\n`, `\t`, `\u2028`, "<&>", `\u003c`, "字", "0", " ", `\ud83d\ude00`, "😀"}
	var sb strings.Builder
	sb.WriteByte('"')
	for range g.r.IntN(8) {
		sb.WriteString(parts[g.r.IntN(len(parts))])
	}
	sb.WriteByte('"')
	return sb.String()
}

func (g *gen) value(depth int) string {
	numbers := []string{"0", "-0", "1.50", "1e3", "1E+03", "-2.5e-7", "12345678901234567890", "0.000001000", "3.0"}
	k := g.r.IntN(8)
	if depth > 3 && k >= 6 {
		k = g.r.IntN(6)
	}
	switch k {
	case 0:
		return numbers[g.r.IntN(len(numbers))]
	case 1, 2:
		return g.str()
	case 3:
		return []string{"true", "false"}[g.r.IntN(2)]
	case 4:
		return "null"
	case 5:
		return "{}"
	case 6:
		var parts []string
		for range g.r.IntN(4) {
			parts = append(parts, g.value(depth+1))
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		var parts []string
		for range 1 + g.r.IntN(3) {
			parts = append(parts, g.key()+":"+g.value(depth+1))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
}

// inject adds random members the pipeline does not know to the objects
// of ev: at the top level, in user, user.extra, impersonatedUser,
// objectRef, responseStatus, annotations, and anywhere in the bodies,
// each with values of the type the typed view expects there.
func (g *gen) inject(tb testing.TB, ev []byte, n int) []byte {
	for range n {
		spans := objectSpans(tb, ev)
		var targets []objectSpan
		for _, s := range spans {
			switch {
			case s.path == "", s.path == "/user", s.path == "/user/extra", s.path == "/impersonatedUser",
				s.path == "/objectRef", s.path == "/responseStatus", s.path == "/annotations",
				strings.HasPrefix(s.path, "/requestObject"), strings.HasPrefix(s.path, "/responseObject"),
				strings.HasPrefix(s.path, "/responseStatus/"):
				targets = append(targets, s)
			}
		}
		s := targets[g.r.IntN(len(targets))]
		var v string
		switch s.path {
		case "/user/extra":
			v = "[" + g.str() + "]" // map[string][]string
		case "/annotations":
			v = g.str() // map[string]string
		default:
			v = g.value(0)
		}
		ev = insertMember(ev, s, g.key()+":"+v)
	}
	return ev
}

// timestampForms are RFC 3339 spellings the apiserver and converters
// write; each must come out as it went in.
var timestampForms = []string{
	"2026-05-01T10:11:12.418830Z", "2026-05-01T10:11:12Z", "2026-05-01T10:11:12.100000Z",
	"2026-05-01T12:11:12.418830+02:00", "2026-05-01T10:11:12.000000001Z",
}

// withTimestamps rewrites the two timestamps of ev (when present) to
// random forms.
func (g *gen) withTimestamps(tb testing.TB, ev []byte) []byte {
	var m map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(ev, &m))
	for _, k := range []string{"requestReceivedTimestamp", "stageTimestamp"} {
		old, ok := m[k]
		if !ok {
			continue
		}
		ts := `"` + timestampForms[g.r.IntN(len(timestampForms))] + `"`
		ev = bytes.Replace(ev, append([]byte(`"`+k+`":`), old...), []byte(`"`+k+`":`+ts), 1)
	}
	return ev
}

// decodeExact decodes JSON keeping numbers as their text.
func decodeExact(tb testing.TB, b []byte) map[string]any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v map[string]any
	require.NoError(tb, dec.Decode(&v), "%s", b)
	return v
}

// processOne runs ev through h and returns the output record's value and
// its auditpipe member.
func processOne(tb testing.TB, h *harness, ev []byte) ([]byte, schemas.Pipeline) {
	tb.Helper()
	h.prod.calls = nil
	require.NoError(tb, h.p.Handle(tb.Context(), batch(raw(1, ev))))
	out := h.prod.records()
	require.Len(tb, out, 1)
	require.Equal(tb, schemas.DefaultEventsTopic, out[0].Topic, "DLQ reason %s for %s", out[0].HeaderValue(schemas.HeaderDLQReason), ev)
	require.True(tb, utf8.Valid(out[0].Value))
	return out[0].Value, decodeOut(tb, out[0]).Pipeline
}

// TestEventsPassUnaltered is the property of issue 12: under a policy that
// keeps everything, the processed event is the event as sent (as a JSON
// value, with numbers and strings compared as their exact text) plus the
// auditpipe member, whatever members it carries that auditpipe does not
// know, at any level, and whatever timestamp forms it uses.
func TestEventsPassUnaltered(t *testing.T) {
	events := publicEvents(t)
	h := newHarness(t, recordAll, pipeline.Config{})
	for seed := range 400 {
		g := &gen{r: rand.New(rand.NewPCG(uint64(seed), 12))}
		ev := events[g.r.IntN(len(events))]
		ev = g.withTimestamps(t, ev)
		ev = g.inject(t, ev, 1+g.r.IntN(8))
		value, pl := processOne(t, h, ev)
		want := decodeExact(t, ev)
		got := decodeExact(t, value)
		require.Contains(t, got, schemas.PipelineKey)
		delete(got, schemas.PipelineKey)
		for _, p := range pl.Redacted {
			setPointer(t, want, p, schemas.RedactedValue)
		}
		require.Equal(t, want, got, "seed %d: %s\n->\n%s", seed, ev, value)
	}
}

// TestLoweringChangesOnlyDocumentedMembers: under a policy that lowers
// levels and omits managed fields, everything but the level and the
// bodies comes out as sent; a kept body is the body as sent without
// metadata.managedFields (and with redacted values).
func TestLoweringChangesOnlyDocumentedMembers(t *testing.T) {
	events := publicEvents(t)
	h := newHarness(t, "lean.yaml", pipeline.Config{})
	rank := map[string]int{policy.LevelMetadata: 1, policy.LevelRequest: 2, policy.LevelRequestResponse: 3}
	kept := 0
	for seed := range 400 {
		g := &gen{r: rand.New(rand.NewPCG(uint64(seed), 13))}
		ev := g.inject(t, events[g.r.IntN(len(events))], 1+g.r.IntN(8))
		h.prod.calls = nil
		require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, ev))))
		out := h.prod.records()
		if len(out) == 0 {
			continue // dropped by the policy
		}
		kept++
		require.Equal(t, schemas.DefaultEventsTopic, out[0].Topic)
		pl := decodeOut(t, out[0]).Pipeline
		want, got := decodeExact(t, ev), decodeExact(t, out[0].Value)
		delete(got, schemas.PipelineKey)
		for _, p := range pl.Redacted {
			setPointer(t, want, p, schemas.RedactedValue)
		}
		require.LessOrEqual(t, rank[got["level"].(string)], rank[want["level"].(string)], "level raised")
		require.Equal(t, pl.OriginalLevel, want["level"])
		for _, k := range []string{"requestObject", "responseObject"} {
			if body, ok := got[k]; ok {
				require.Equal(t, withoutManagedFields(want[k]), body, "seed %d: %s", seed, k)
			}
			delete(got, k)
			delete(want, k)
		}
		delete(got, "level")
		delete(want, "level")
		require.Equal(t, want, got, "seed %d", seed)
	}
	require.Greater(t, kept, 50)
}

// withoutManagedFields removes metadata.managedFields from an object, the
// items of a list and the row objects of a table.
func withoutManagedFields(v any) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	strip := func(o any) {
		if m, ok := o.(map[string]any); ok {
			if meta, ok := m["metadata"].(map[string]any); ok {
				delete(meta, "managedFields")
			}
		}
	}
	strip(obj)
	if items, ok := obj["items"].([]any); ok {
		for _, it := range items {
			strip(it)
		}
	}
	if rows, ok := obj["rows"].([]any); ok && obj["kind"] == "Table" {
		for _, r := range rows {
			if m, ok := r.(map[string]any); ok {
				strip(m["object"])
			}
		}
	}
	return obj
}

// setPointer sets the value at the JSON Pointer p in v.
func setPointer(tb testing.TB, v any, p string, to any) {
	tb.Helper()
	toks := strings.Split(p, "/")[1:]
	for i, tok := range toks {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		last := i == len(toks)-1
		switch c := v.(type) {
		case map[string]any:
			if last {
				c[tok] = to
				return
			}
			v = c[tok]
		case []any:
			n, err := strconv.Atoi(tok)
			require.NoError(tb, err)
			if last {
				c[n] = to
				return
			}
			v = c[n]
		default:
			tb.Fatalf("pointer %s: %T at %q", p, v, tok)
		}
	}
}

// kafkaValue wraps an output value as a record for decodeOut.
func kafkaValue(v []byte) kafka.Record { return kafka.Record{Value: v} }
