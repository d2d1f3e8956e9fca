package pipeline_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// FuzzNoSecretSurvives is the redaction property: for any secret value,
// in any of the places the apiserver can record one (Secret data and
// stringData in request, response and lists, a Secret's last-applied
// copy, TokenReview and TokenRequest tokens, a patch of a Secret), no
// encoding of the value is in the processed record: also when a key on
// the way to it is repeated (at any level, up to a second top-level
// requestObject) with the secret in the copy a last-key reader would not
// see, or spelled with \u escapes. The seed corpus runs
// in every `go test`; `go test -fuzz FuzzNoSecretSurvives` explores more.
func FuzzNoSecretSurvives(f *testing.F) {
	for i, v := range []string{"hunter2", "", "\"quoted\"\\", "<html>&amp;", "ünïcödé", "\x00\x01\xff", "a/b~c", "eyJhbGciOi.x.y"} {
		for shape := range 16 {
			f.Add(v, uint8(i+shape))
		}
	}
	base := fixture(f, "create_secret.json")
	h := newHarness(f, recordAll, pipeline.Config{})
	f.Fuzz(func(t *testing.T, value string, shape uint8) {
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
		h.prod.calls = nil
		require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, ev))))
		out := h.prod.records()
		require.Len(t, out, 1)
		require.Equal(t, schemas.DefaultEventsTopic, out[0].Topic, "reason %s", out[0].HeaderValue(schemas.HeaderDLQReason))
		requireNoSecret(t, out[0].Value, secret)
	})
}
