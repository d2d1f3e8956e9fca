package pipeline_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// FuzzNoSecretSurvives is the redaction property: for any secret value,
// in any of the places the apiserver can record one (Secret data and
// stringData in request, response and lists, a Secret's last-applied
// copy, TokenReview and TokenRequest tokens, a patch of a Secret), no
// encoding of the value is in the processed record: also when a key on
// the way to it is repeated with the secret in the copy a last-key reader
// does not see (hand-written shapes, and any member of any object of the
// event followed by a copy without the secret, chosen by dupAt and
// memberAt), or spelled with \u escapes. The seed corpus runs in every
// `go test`; `go test -fuzz FuzzNoSecretSurvives` explores more.
func FuzzNoSecretSurvives(f *testing.F) {
	for i, v := range []string{"hunter2", "", "\"quoted\"\\", "<html>&amp;", "ünïcödé", "\x00\x01\xff", "a/b~c", "eyJhbGciOi.x.y"} {
		for shape := range 16 {
			f.Add(v, uint8(i+shape), uint8(0), uint8(0))
			f.Add(v, uint8(i+shape), uint8(1+i*7+shape), uint8(i+shape))
		}
	}
	base := fixture(f, "create_secret.json")
	h := newHarness(f, recordAll, pipeline.Config{})
	f.Fuzz(func(t *testing.T, value string, shape, dupAt, memberAt uint8) {
		// The marker makes the value long and unlike anything else in an
		// event, so finding it in the output can only mean a leak.
		secret := "S3cr3t-" + value + "-v4lue"
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		var ev []byte
		tokenReview := setObjectRef("tokenreviews", "authentication.k8s.io", "", "create")
		secretPatch := setObjectRef("secrets", "", "", "patch")
		switch shape % 16 {
		case 0:
			ev = withBodies(t, base, nil, secretBody("s", secret, secret), secretBody("s", secret, secret))
		case 1:
			ev = withBodies(t, base, setObjectRef("secrets", "", "", "list"), "",
				`{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":`+q(b64(secret))+`},"stringData":{"k":`+q(secret)+`}}]}`)
		case 2:
			ev = withBodies(t, base, setObjectRef("tokenreviews", "authentication.k8s.io", "", "create"),
				`{"kind":"TokenReview","spec":{"token":`+q(secret)+`}}`, `{"kind":"TokenReview","spec":{"token":`+q(secret)+`},"status":{}}`)
		case 3:
			ev = withBodies(t, base, setObjectRef("serviceaccounts", "", "token", "create"), "",
				`{"kind":"TokenRequest","status":{"token":`+q(secret)+`}}`)
		case 4:
			ev = withBodies(t, base, setObjectRef("secrets", "", "", "patch"),
				`[{"op":"add","path":"/stringData/`+strconv.Itoa(len(value))+`","value":`+q(secret)+`}]`, "")
		case 5:
			ev = withBodies(t, base, setObjectRef("secrets", "", "", "patch"),
				`{"stringData":{"k":`+q(secret)+`},"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":`+q(`{"stringData":{"k":`+q(secret)+`}}`)+`}}}`, "")
		case 6:
			ev = withBodies(t, base, setObjectRef("pods", "", "", "list"), "",
				`{"kind":"List","items":[{"kind":"Secret","data":{"k":`+q(b64(secret))+`},"stringData":{"k":`+q(secret)+`}}]}`)
		// Repeated keys: the secret is in the copy that encoding/json
		// (and so the redactor's map) does not keep.
		case 7:
			ev = withBodies(t, base, secretPatch, `{"data":{"k":`+q(b64(secret))+`},"data":null}`, "")
		case 8:
			ev = withBodies(t, base, secretPatch, `{"stringData":{"k":`+q(secret)+`,"k":"x"},"stringData":{}}`, "")
		case 9:
			ev = withBodies(t, base, setObjectRef("secrets", "", "", "list"), "",
				`{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":`+q(b64(secret))+`},"data":{}}]}`)
		case 10:
			ev = withBodies(t, base, tokenReview, `{"kind":"TokenReview","spec":{"token":`+q(secret)+`},"spec":{}}`,
				`{"kind":"TokenReview","spec":{"token":`+q(secret)+`,"token":"x"}}`)
		case 11:
			// A second top-level requestObject after the one holding it.
			ev = withBodies(t, base, nil, secretBody("s", secret, secret), "")
			ev = append(ev[:len(ev)-1], `,"requestObject":null}`...)
		// Escapes: keys and kinds that mean the same to a decoder but not
		// to a byte comparison.
		case 12:
			ev = withBodies(t, base, secretPatch, `{"d\u0061ta":{"k":`+q(b64(secret))+`},"\u0073tringData":{"k":`+q(secret)+`}}`, "")
		case 13:
			ev = withBodies(t, base, tokenReview, `{"kind":"TokenReview","spec":{"\u0074oken":`+q(secret)+`}}`,
				`{"kind":"TokenReview","sp\u0065c":{"token":`+q(secret)+`}}`)
		case 14:
			ev = withBodies(t, base, setObjectRef("pods", "", "", "list"), "",
				`{"kind":"List","items":[{"kind":"\u0053ecret","data":{"k":`+q(b64(secret))+`}}]}`)
		case 15:
			// Both: a repeated, escaped key.
			ev = withBodies(t, base, secretPatch, `{"data":{"k":`+q(b64(secret))+`},"d\u0061ta":null,"metadata":{}}`, "")
		}
		if dupAt > 0 {
			ev = repeatWithoutSecret(t, ev, secret, int(dupAt-1), int(memberAt))
		}
		h.prod.calls = nil
		require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, ev))))
		out := h.prod.records()
		require.Len(t, out, 1)
		require.Equal(t, schemas.DefaultEventsTopic, out[0].Topic, "reason %s", out[0].HeaderValue(schemas.HeaderDLQReason))
		requireNoSecret(t, out[0].Value, secret)
	})
}

// repeatWithoutSecret picks an object of ev's bodies (or a body itself)
// and one of its members, and appends to the object a second member with
// the same key and a harmless value: null (which the redactor leaves
// alone, so before normalization the copy with the secret went out as
// sent), or the first value with every encoding of secret replaced. The
// copy that encoding/json and the redactor read is harmless, the one
// before it holds the secret. Members that say what an object is (kind,
// the event's own members but the bodies) are left alone: without them
// the secret is not recognisable as one, by the apiserver either.
func repeatWithoutSecret(tb testing.TB, ev []byte, secret string, spanAt, memberAt int) []byte {
	tb.Helper()
	var spans []objectSpan
	for _, s := range objectSpans(tb, ev) {
		if s.path == "" || strings.HasPrefix(s.path, "/requestObject") || strings.HasPrefix(s.path, "/responseObject") {
			spans = append(spans, s)
		}
	}
	s := spans[spanAt%len(spans)]
	obj := ev[s.start:s.end]
	var ms []jsonbytes.Member
	require.NoError(tb, jsonbytes.Members(obj, func(m jsonbytes.Member) {
		switch k := string(m.Key); {
		case k == "kind" || k == "apiVersion":
		case s.path == "" && k != "requestObject" && k != "responseObject":
		default:
			ms = append(ms, m)
		}
	}))
	if len(ms) == 0 {
		return ev
	}
	m := ms[memberAt%len(ms)]
	harmless := "null"
	if memberAt%2 == 1 {
		harmless = string(obj[m.ValueStart:m.ValueEnd])
		for _, form := range secretForms(secret) {
			if form != "" {
				harmless = strings.ReplaceAll(harmless, form, "x")
			}
		}
		if !json.Valid([]byte(harmless)) {
			return ev
		}
	}
	return insertMember(ev, s, string(obj[m.Start:m.ValueStart])+harmless)
}
