package pipeline_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/stretchr/testify/require"
)

// FuzzNoSecretSurvives is the redaction property: for any secret value,
// in any of the places the apiserver can record one (Secret data and
// stringData in request, response and lists, a Secret's last-applied
// copy, TokenReview and TokenRequest tokens, a patch of a Secret), no
// encoding of the value is in the processed record. The seed corpus runs
// in every `go test`; `go test -fuzz FuzzNoSecretSurvives` explores more.
func FuzzNoSecretSurvives(f *testing.F) {
	for i, v := range []string{"hunter2", "", "\"quoted\"\\", "<html>&amp;", "ünïcödé", "\x00\x01\xff", "a/b~c", "eyJhbGciOi.x.y"} {
		f.Add(v, uint8(i))
	}
	base := fixture(f, "create_secret.json")
	h := newHarness(f, recordAll, pipeline.Config{})
	f.Fuzz(func(t *testing.T, value string, shape uint8) {
		// The marker makes the value long and unlike anything else in an
		// event, so finding it in the output can only mean a leak.
		secret := "S3cr3t-" + value + "-v4lue"
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		var ev []byte
		switch shape % 7 {
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
		}
		h.prod.calls = nil
		require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, ev))))
		out := h.prod.records()
		require.Len(t, out, 1)
		requireNoSecret(t, out[0].Value, secret)
	})
}
