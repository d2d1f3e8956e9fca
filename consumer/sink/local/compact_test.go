package local

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/internal/eventgen"
	"github.com/auditpipe/auditpipe/internal/jsonbytes"
)

var testTime = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// decodeRow stores a value as it is when jsonbytes.Valid accepts it and
// spaceOutsideStrings finds nothing to remove, and otherwise what
// json.Compact makes of it (decision 0025). That is the same text exactly
// when the two checks say what json.Compact would do.
func FuzzCompactCheckMatchesJSONCompact(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, ` {"a":1}`, `{"a":1} `, `{"a" :1}`, `{"a":[1, 2]}`, "{\"a\":\n1}",
		`{"a":"x y"}`, `{"a":"q\"  \\"}`, `{"a":"\\"}`, `{"a":"\\", "b":1}`, `{"a":"\u0020"}`,
		`[1,2]`, `"s"`, `1`, `{"a":1,}`, `{"a":"x`, `{"a":"\`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Add(eventgen.Event("c1", "a", 1400, testTime))
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf bytes.Buffer
		err := json.Compact(&buf, b)
		require.Equal(t, err == nil, jsonbytes.Valid(b), "%q", b)
		if err != nil {
			return
		}
		require.Equal(t, !bytes.Equal(buf.Bytes(), b), spaceOutsideStrings(b), "%q", b)
	})
}

// An event that is not compact is stored compacted, and an invalid one is
// rejected with encoding/json's reason, as before the fast path.
func TestDecodeRowCompactsAndRejects(t *testing.T) {
	ev := eventgen.Event("c1", "a", 1400, testTime)
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, ev, "", "  "))
	var buf bytes.Buffer
	for _, v := range [][]byte{ev, indented.Bytes()} {
		r, err := decodeRow(v, &buf)
		require.NoError(t, err)
		require.Equal(t, string(ev), r.event)
		require.Equal(t, "a", r.auditID)
	}
	_, err := decodeRow(ev[:len(ev)-1], &buf)
	require.ErrorContains(t, err, "not a ProcessedEvent: unexpected end of JSON input")
	_, err = decodeRow([]byte(`{"auditID":"a",}`), &buf)
	require.ErrorContains(t, err, "not a ProcessedEvent: invalid character '}'")
}
