package rawevent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
)

// FuzzDecodeFastMatchesEncodingJSON: whenever decodeFast decodes a
// normalized event, it reads what encoding/json reads, with the same
// verdict. Seeded with every public fixture and the forms it hands over
// to encoding/json.
func FuzzDecodeFastMatchesEncodingJSON(f *testing.F) {
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
		`{"auditID":"a","stage":"s","verb":"v","user":{"username":"u\u0041","groups":["a","b\"c"],"extra":{"k":["v"],"e":[]}},"sourceIPs":[]}`,
		`{"auditID":"a","stage":"s","verb":"v","user":null,"impersonatedUser":{"username":"x"},"objectRef":null}`,
		`{"auditID":"a","stage":"s","verb":"v","responseStatus":{"metadata":{},"code":403,"details":null}}`,
		`{"auditID":"a","stage":"s","verb":"v","responseStatus":{"code":4.03e2}}`,
		`{"auditID":"a","stage":"s","verb":"v","responseStatus":{"code":99999999999}}`,
		`{"auditID":"a","stage":"s","verb":"v","annotations":{},"sourceIPs":null}`,
		`{"auditID":"a","stage":"s","verb":"v","annotations":{"a":null,"b":1}}`,
		`{"auditID":"a","stage":"s","verb":"v","stageTimestamp":"2024-01-01T00:00:00.123456Z","requestReceivedTimestamp":"bad"}`,
		`{"auditID":"a","stage":"s","verb":"v","stageTimestamp":null,"level":5}`,
		`{"auditID":"a","stage":"s","verb":"v","user":{"groups":[null,"a"],"extra":{"k":null}}}`,
		`{"auditID":"a","stage":"s","verb":"v","user":{"extra":{"k\u0041":["v"]}},"kind":"Event","apiVersion":"audit.k8s.io/v1"}`,
		`{"auditID":"a","stage":"s","verb":"v","user":"bob","objectRef":{"resource":"pods","name":"x","unknown":[1,{"a":2}]}}`,
		`{"auditID":"a","stage":"s","verb":"v","requestObject":null,"responseObject":{"a":[1,2]}}`,
		`{"kind":"EventList","auditID":"","stage":"s","verb":"v"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		if !utf8.Valid(value) {
			return // Parse refuses it before decoding
		}
		var buf [24]jsonbytes.Member
		n, err := jsonbytes.Normalize(value, MaxDepth, cutValue, buf[:0])
		if err != nil {
			return
		}
		e := &Event{value: n.Value, members: n.Members, keys: make([][]byte, len(n.Members))}
		var req, resp []byte
		for i, m := range n.Members {
			key := m.Key
			if m.KeyEscaped {
				key = []byte(unquote(n.Value[m.Start:m.ValueStart]))
			}
			e.keys[i] = key
			switch string(key) {
			case keyRequestObject:
				req = n.Value[m.ValueStart:m.ValueEnd]
			case keyResponseObject:
				resp = n.Value[m.ValueStart:m.ValueEnd]
			}
		}
		if e.ambiguous() != "" {
			return
		}
		got, ok := decodeFast(n.Value, e.members, e.keys)
		if !ok {
			return
		}
		got.RequestObject, got.ResponseObject = req, resp
		want, reason := decodeSlow(n.Value, e, req, resp)
		require.Equal(t, reason, checkTyped(got), "%s", value)
		require.Equal(t, want, got, "%s", value)
	})
}

// TestDecodeFastReadsFixtures: the fast path is the common path, so that
// FuzzDecodeFastMatchesEncodingJSON compares something: it decodes every
// public fixture that is an audit event.
func TestDecodeFastReadsFixtures(t *testing.T) {
	files, err := filepath.Glob("../../../testdata/public-audit/*/*.json*")
	require.NoError(t, err)
	fast := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, line := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			e, _, reason := Parse(line)
			if reason != "" {
				continue
			}
			_, ok := decodeFast(e.value, e.members, e.keys)
			require.True(t, ok, "%s: %s", file, line)
			fast++
		}
	}
	require.Greater(t, fast, 10)
}
