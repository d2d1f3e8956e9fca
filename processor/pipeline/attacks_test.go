package pipeline_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// Regression tests for issue 12: each builds the attack on a real event
// and checks that it no longer works.

// withMembers appends raw members to the top-level object of ev.
func withMembers(ev []byte, members ...string) []byte {
	ev = bytes.TrimSpace(ev)
	out := append([]byte{}, ev[:len(ev)-1]...)
	for _, m := range members {
		out = append(out, ","+m...)
	}
	return append(out, '}')
}

// firstMember returns the first top-level member named key, as a reader
// that takes the first of repeated keys (SQLite's json_extract) sees it.
func firstMember(tb testing.TB, b []byte, key string) json.RawMessage {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	_, err := dec.Token()
	require.NoError(tb, err)
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(tb, err)
		var v json.RawMessage
		require.NoError(tb, dec.Decode(&v))
		if tok == key {
			return v
		}
	}
	return nil
}

// TestRepeatedMembersAreReadOnce: an event with two objectRef and two
// auditID members. encoding/json took the last auditID and merged the two
// objectRefs (a resource from one, a name from the other), while a
// first-key reader saw the first: the policy, the redactor and the store
// each saw another event. Now the last member wins everywhere and the
// earlier one is gone from the output.
func TestRepeatedMembersAreReadOnce(t *testing.T) {
	h := newHarness(t, recordAll, pipeline.Config{})
	ev := withMembers(fixture(t, "create_deployment.json"),
		`"objectRef":{"resource":"secrets","namespace":"kube-system","name":"admin-token"}`,
		`"auditID":"forged-1"`,
		`"objectRef":{"resource":"configmaps","namespace":"default"}`,
		`"auditID":"forged-2"`)
	value, _ := processOne(t, h, ev)
	require.Equal(t, 1, bytes.Count(value, []byte(`"auditID":`)), "%s", value)
	require.Equal(t, 1, bytes.Count(value, []byte(`"objectRef":`)), "%s", value)
	pe := decodeOut(t, kafkaValue(value))
	require.Equal(t, "forged-2", pe.AuditID)
	require.Equal(t, &schemas.ObjectReference{Resource: "configmaps", Namespace: "default"}, pe.ObjectRef, "not merged")
	require.JSONEq(t, `"forged-2"`, string(firstMember(t, value, "auditID")), "a first-key reader agrees")
	require.JSONEq(t, `{"resource":"configmaps","namespace":"default"}`, string(firstMember(t, value, "objectRef")))
}

// TestAmbiguousMembersAreRefused: members that readers would still read
// differently after repeated keys are resolved go to the DLQ with the
// reason. encoding/json matches struct fields case-insensitively, so
// "Verb" was the verb to the policy and to the store's Go decoder but not
// to json_extract; an "auditpipe" member of the event's own was merged
// into the processor's by encoding/json.
func TestAmbiguousMembersAreRefused(t *testing.T) {
	h := newHarness(t, recordAll, pipeline.Config{})
	base := fixture(t, "create_deployment.json")
	cases := []struct {
		ev     []byte
		reason string
	}{
		{withMembers(base, `"Verb":"delete"`), `member "Verb" differs from the field "verb" only in case`},
		{withMembers(base, `"objectRef":{"resource":"pods","Resource":"secrets"}`), `member objectRef."Resource" differs`},
		{withMembers(base, `"user":{"username":"alice","userName":"system:admin"}`), `member user."userName" differs`},
		{withMembers(base, `"responseStatus":{"code":201,"Code":403}`), `member responseStatus."Code" differs`},
		{withMembers(base, `"auditpipe":{"cluster":"victim","detections":[]}`), `has a member "auditpipe"`},
		{withMembers(base, `"AuditPipe":{"cluster":"victim"}`), `has a member "AuditPipe"`},
		{withMembers(base, `"\u0041uditID":"x"`), `member "AuditID" differs`},
		// encoding/json folds U+212A KELVIN SIGN to "k".
		{withMembers(base, `"\u212aind":"Event"`), "differs from the field \"kind\" only in case"},
	}
	var recs = batch()
	for i, c := range cases {
		recs.Records = append(recs.Records, raw(int64(i), c.ev))
	}
	require.NoError(t, h.p.Handle(t.Context(), recs))
	out := h.prod.records()
	require.Len(t, out, len(cases))
	for i, r := range out {
		require.Equal(t, schemas.DefaultDLQTopic, r.Topic, "case %d: %s", i, r.Value)
		require.Contains(t, string(r.HeaderValue(schemas.HeaderDLQReason)), cases[i].reason, "case %d", i)
		require.Equal(t, cases[i].ev, r.Value, "the DLQ keeps the bytes as sent")
	}
}

// TestInvalidUTF8IsRefusedNotMerged: two events whose auditIDs differ only
// in invalid bytes. encoding/json read both as "a\uFFFDb", so both were
// acknowledged and the store kept one. Now both go to the DLQ with the
// reason and their bytes; a valid event in the same batch passes.
func TestInvalidUTF8IsRefusedNotMerged(t *testing.T) {
	h := newHarness(t, recordAll, pipeline.Config{})
	base := string(fixture(t, "create_deployment.json"))
	var id struct {
		AuditID string `json:"auditID"`
	}
	require.NoError(t, json.Unmarshal([]byte(base), &id))
	ev1 := []byte(strings.Replace(base, id.AuditID, "a\xffb", 1))
	ev2 := []byte(strings.Replace(base, id.AuditID, "a\xfeb", 1))
	require.NotEqual(t, ev1, ev2)
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, ev1), raw(2, ev2), raw(3, []byte(base)))))
	out := h.prod.records()
	require.Len(t, out, 3)
	for i, want := range [][]byte{ev1, ev2} {
		require.Equal(t, schemas.DefaultDLQTopic, out[i].Topic)
		require.Equal(t, want, out[i].Value)
		require.Contains(t, string(out[i].HeaderValue(schemas.HeaderDLQReason)), "not valid UTF-8: byte 0x")
	}
	require.Equal(t, schemas.DefaultEventsTopic, out[2].Topic)
}

// deepValue is an object nested depth levels: {"a":{"a":...{"a":"leaf"}}}.
func deepValue(depth int) string {
	return strings.Repeat(`{"a":`, depth) + `"leaf"` + strings.Repeat("}", depth)
}

// jsonDepth is the nesting depth of a JSON document.
func jsonDepth(tb testing.TB, b []byte) int {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// TestDeepNestingIsCutAndMarked: an event nested 1,000 levels deep in its
// request body and in a member of its own was passed on whole, and made
// every JSON search of the local store fail (SQLite's JSON functions
// stop at 1,000 levels). Now the deep subtrees are replaced with the cut
// marker, auditpipe.cut says where, and the rest of the event is kept.
func TestDeepNestingIsCutAndMarked(t *testing.T) {
	h := newHarness(t, recordAll, pipeline.Config{})
	base := withBodies(t, fixture(t, "create_configmap.json"), nil, `{"kind":"ConfigMap","deep":`+deepValue(1000)+`}`, "")
	ev := withMembers(base, `"extension":`+deepValue(1000))
	value, pl := processOne(t, h, ev)
	require.LessOrEqual(t, jsonDepth(t, value), 256)

	// The cut subtrees are where the marker is, at the first level past
	// the limit: the event is level 1, requestObject 2, deep 3, ...
	reqPtr := "/requestObject/deep" + strings.Repeat("/a", 257-3)
	extPtr := "/extension" + strings.Repeat("/a", 257-2)
	require.Equal(t, []string{reqPtr, extPtr}, pl.Cut)
	got := decodeExact(t, value)
	want := decodeExact(t, ev)
	setPointer(t, want, reqPtr, schemas.CutValue)
	setPointer(t, want, extPtr, schemas.CutValue)
	delete(got, schemas.PipelineKey)
	require.Equal(t, want, got, "everything but the cut subtrees is kept")

	// An event within the limit is not touched.
	value, pl = processOne(t, h, withMembers(fixture(t, "create_configmap.json"), `"extension":`+deepValue(200)))
	require.Empty(t, pl.Cut)
	require.Contains(t, string(value), deepValue(200))
}

// TestTruncationEditsInPlace: an event over the size limit loses its
// bodies and gains the apiserver's truncation annotation next to its own;
// every other member stays as sent.
func TestTruncationEditsInPlace(t *testing.T) {
	h := newHarness(t, recordAll, pipeline.Config{MaxEventBytes: 2048})
	ev := withMembers(fixture(t, "create_nginx_pod_privileged_2nd_container.json"), `"authenticationMetadata":{"impersonationConstraint":"x","n":1.50}`)
	require.Greater(t, len(ev), 2048)
	value, pl := processOne(t, h, ev)
	require.True(t, pl.Truncated)
	got, want := decodeExact(t, value), decodeExact(t, ev)
	require.NotContains(t, got, "requestObject")
	require.NotContains(t, got, "responseObject")
	require.Equal(t, "Metadata", got["level"])
	wantAnn := want["annotations"].(map[string]any)
	wantAnn["audit.k8s.io/truncated"] = "true"
	for _, k := range []string{"requestObject", "responseObject", "level", schemas.PipelineKey} {
		delete(got, k)
		delete(want, k)
	}
	require.Equal(t, want, got)
	require.Contains(t, string(value), `"n":1.50`)
}
