package jsonbytes_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/stretchr/testify/require"
)

var cutMarker = []byte(`"CUT"`)

func TestNormalizeRemovesEarlierDuplicates(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"a":2}`:                         `{"a":2}`,
		`{"a":1 , "b":2,"a":3}`:                 `{"b":2,"a":3}`,
		`{"d\u0061ta":{"p":"s"},"data":null}`:   `{"data":null}`,
		`{"data":null,"d\u0061ta":{"p":"s"}}`:   `{"d\u0061ta":{"p":"s"}}`,
		`{"x":{"t":"a","t":"b","t":"c"},"y":1}`: `{"x":{"t":"c"},"y":1}`,
		`{"s":{"k":1},"s":{"k":{"a":1,"a":2}}}`: `{"s":{"k":{"a":2}}}`,
		`{"a":[{"k":1,"k":2},{"k":3}]}`:         `{"a":[{"k":2},{"k":3}]}`,
		` { "a" : 1 }`:                          ` { "a" : 1 }`,
		`{"A":1,"a":2}`:                         `{"A":1,"a":2}`, // distinct keys for a case-sensitive reader
	} {
		got, err := jsonbytes.Normalize([]byte(in), 100, cutMarker, nil)
		require.NoError(t, err, in)
		require.Equal(t, want, string(got.Value), in)
		requireMembersMatch(t, got)
	}
}

func TestNormalizeCutsDeepContainers(t *testing.T) {
	in := `{"a":{"b":[1,{"c":{"d":1}},[2]]},"e":{"x~/y":{"z":[]}},"f":1}`
	got, err := jsonbytes.Normalize([]byte(in), 3, cutMarker, nil)
	require.NoError(t, err)
	require.Equal(t, `{"a":{"b":[1,"CUT","CUT"]},"e":{"x~/y":{"z":"CUT"}},"f":1}`, string(got.Value))
	require.Equal(t, []string{"/a/b/1", "/a/b/2", "/e/x~0~1y/z"}, got.Cut)
	requireMembersMatch(t, got)

	// A cut inside a member removed as a duplicate is not reported.
	got, err = jsonbytes.Normalize([]byte(`{"a":{"b":{"c":1}},"a":2}`), 2, cutMarker, nil)
	require.NoError(t, err)
	require.Equal(t, `{"a":2}`, string(got.Value))
	require.Empty(t, got.Cut)
}

func TestNormalizeUnchangedIsSameSlice(t *testing.T) {
	in := []byte(`{"a":{"b":1},"c":[1,2]}`)
	got, err := jsonbytes.Normalize(in, 10, cutMarker, nil)
	require.NoError(t, err)
	require.Same(t, &in[0], &got.Value[0])
	require.Zero(t, got.Removed)
}

func TestNormalizeErrors(t *testing.T) {
	_, err := jsonbytes.Normalize([]byte(`[1]`), 10, cutMarker, nil)
	require.ErrorIs(t, err, jsonbytes.ErrNotObject)
	_, err = jsonbytes.Normalize([]byte(`{"a":[}`), 10, cutMarker, nil)
	var se *jsonbytes.SyntaxError
	require.ErrorAs(t, err, &se)
	// Past the cut, the rest is still validated.
	_, err = jsonbytes.Normalize([]byte(`{"a":{"b":{"c":tru}}}`), 1, cutMarker, nil)
	require.ErrorAs(t, err, &se)
}

// FuzzNormalize: for any JSON object, the output is valid JSON that
// encoding/json reads as it reads the input (it takes the last of
// repeated keys), with the reported subtrees replaced by the marker; it
// has no repeated key at any level, no container deeper than the limit,
// and its reported members are its top-level members.
func FuzzNormalize(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s), uint8(3))
	}
	for _, s := range []string{`{"a":1,"a":2}`, `{"d\u0061ta":{"p":"s"},"data":null}`, `{"a":[[[[1]]]],"a":{"b":{"c":{}}}}`, `{"x":{"a":1,"b":2,"a":{"c":[1,2,{"a":1,"a":1}]}}}`} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, depth uint8) {
		maxDepth := int(depth%8) + 1
		got, err := jsonbytes.Normalize(b, maxDepth, cutMarker, nil)
		if !json.Valid(b) {
			require.Error(t, err)
			return
		}
		if firstNonWS(b) != '{' {
			require.ErrorIs(t, err, jsonbytes.ErrNotObject)
			return
		}
		require.NoError(t, err)
		require.True(t, json.Valid(got.Value), "%q -> %q", b, got.Value)
		requireMembersMatch(t, got)
		if !utf8.Valid(b) {
			return // encoding/json maps distinct invalid keys to one
		}
		var in, out any
		require.NoError(t, json.Unmarshal(b, &in))
		require.NoError(t, json.Unmarshal(got.Value, &out))
		for _, p := range got.Cut {
			in = setPointer(t, in, p, "CUT")
		}
		require.Equal(t, in, out, "%q -> %q", b, got.Value)
		d, dup := shape(t, got.Value)
		require.False(t, dup, "repeated key left in %q", got.Value)
		require.LessOrEqual(t, d, maxDepth, "%q", got.Value)
	})
}

func requireMembersMatch(t *testing.T, n jsonbytes.Normalized) {
	t.Helper()
	var want []jsonbytes.Member
	require.NoError(t, jsonbytes.Members(n.Value, func(m jsonbytes.Member) { want = append(want, m) }))
	if len(want) == 0 {
		require.Empty(t, n.Members)
		return
	}
	require.Equal(t, want, n.Members)
}

// shape reports the nesting depth of a JSON value and whether an object
// in it repeats a key, reading tokens with encoding/json.
func shape(t *testing.T, b []byte) (depth int, dup bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return depth, dup
		}
		require.NoError(t, err)
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.expect {
			if d, ok := tok.(json.Delim); !ok || d != '}' {
				k := tok.(string)
				if top.keys[k] {
					dup = true
				}
				top.keys[k] = true
				top.expect = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			stack = append(stack, &frame{object: tok == json.Delim('{'), keys: map[string]bool{}, expect: true})
			depth = max(depth, len(stack))
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].expect = true
		}
	}
}

// setPointer sets the value at the JSON Pointer p in v.
func setPointer(t *testing.T, v any, p string, to any) any {
	if p == "" {
		return to
	}
	tok, rest, _ := strings.Cut(p[1:], "/")
	tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
	var restPtr string
	if strings.Contains(p[1:], "/") {
		restPtr = "/" + rest
	}
	switch c := v.(type) {
	case map[string]any:
		c[tok] = setPointer(t, c[tok], restPtr, to)
	case []any:
		i, err := strconv.Atoi(tok)
		require.NoError(t, err)
		c[i] = setPointer(t, c[i], restPtr, to)
	default:
		t.Fatalf("pointer %s into a %T", p, v)
	}
	return v
}
