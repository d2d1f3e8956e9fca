package pipeline_test

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/pipeline"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// recordAll keeps every level the apiserver recorded, so only redaction
// stands between a secret and the output.
const recordAll = "../pipeline/testdata/record-all.yaml"

// withBodies returns the fixture event with its level raised to
// RequestResponse and the given bodies, as an apiserver whose own policy
// records Secrets in full would have sent it. The public fixtures of
// Secret requests are Metadata-level, so the bodies (shaped like the
// apiserver's) are added here.
func withBodies(tb testing.TB, event []byte, mutate func(map[string]any), req, resp string) []byte {
	tb.Helper()
	var ev map[string]any
	require.NoError(tb, json.Unmarshal(event, &ev))
	ev["level"] = "RequestResponse"
	if req != "" {
		ev["requestObject"] = json.RawMessage(req)
	}
	if resp != "" {
		ev["responseObject"] = json.RawMessage(resp)
	}
	if mutate != nil {
		mutate(ev)
	}
	b, err := json.Marshal(ev)
	require.NoError(tb, err)
	return b
}

func jsonQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func secretBody(name, dataValue, stringValue string) string {
	lastApplied, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"stringData": map[string]string{"password": stringValue},
		"data":       map[string]string{"api-key": b64(dataValue)},
	})
	return `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"` + name + `","namespace":"default",` +
		`"annotations":{"kubectl.kubernetes.io/last-applied-configuration":` + jsonQuote(string(lastApplied)) + `,"team":"payments"}},` +
		`"data":{"api-key":"` + b64(dataValue) + `"},"stringData":{"password":` + jsonQuote(stringValue) + `},"type":"Opaque"}`
}

func setObjectRef(resource, group, subresource, verb string) func(map[string]any) {
	return func(ev map[string]any) {
		ref, _ := ev["objectRef"].(map[string]any)
		if ref == nil {
			ref = map[string]any{}
		}
		ref["resource"], ref["apiGroup"], ref["subresource"] = resource, group, subresource
		ev["objectRef"] = ref
		ev["verb"] = verb
	}
}

// TestRedaction runs real Secret-related events, carrying bodies, through
// a policy that keeps everything, and checks that each secret value is
// gone from the output bytes (raw, base64 and JSON-escaped), that what was
// redacted is listed, and that harmless values stay.
func TestRedaction(t *testing.T) {
	const (
		s1 = "hunter2-data-value"
		s2 = "correct horse battery staple"
		tk = "eyJhbGciOiJSUzI1NiJ9.service-account-token.sig"
	)
	saTokenSecret := `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"default-token-7v4pb","namespace":"test2",` +
		`"annotations":{"kubernetes.io/service-account.name":"default"}},"type":"kubernetes.io/service-account-token",` +
		`"data":{"token":"` + b64(tk) + `","namespace":"` + b64("test2") + `"}}`
	cases := []struct {
		name     string
		event    []byte
		secrets  []string
		redacted []string
		kept     []string
		failures float64 // bodies replaced whole
	}{{
		name:    "falco create_secret with request and response bodies",
		event:   withBodies(t, fixture(t, "create_secret.json"), nil, secretBody("example-secret", s1, s2), secretBody("example-secret", s1, s2)),
		secrets: []string{s1, s2},
		redacted: []string{
			"/requestObject/data/api-key", "/requestObject/stringData/password",
			"/requestObject/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
			"/responseObject/data/api-key", "/responseObject/stringData/password",
			"/responseObject/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
		},
		kept: []string{`"team":"payments"`, `"type":"Opaque"`, `"api-key":"auditpipe:redacted"`},
	}, {
		name:     "falco create_service_account_token_secret",
		event:    withBodies(t, fixture(t, "create_service_account_token_secret.json"), nil, saTokenSecret, saTokenSecret),
		secrets:  []string{tk},
		redacted: []string{"/requestObject/data/namespace", "/requestObject/data/token", "/responseObject/data/namespace", "/responseObject/data/token"},
		kept:     []string{`"kubernetes.io/service-account.name":"default"`},
	}, {
		name: "list of secrets (items without kind)",
		event: withBodies(t, fixture(t, "create_kube_system_secret.json"), setObjectRef("secrets", "", "", "list"), "",
			`{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[`+
				`{"metadata":{"name":"bootstrap-token-ne7bxu"},"data":{"token-secret":"`+b64(s1)+`"},"type":"bootstrap.kubernetes.io/token"},`+
				`{"metadata":{"name":"other"},"stringData":{"x":`+strconv.Quote(s2)+`}}]}`),
		secrets:  []string{s1, s2},
		redacted: []string{"/responseObject/items/0/data/token-secret", "/responseObject/items/1/stringData/x"},
		kept:     []string{"bootstrap-token-ne7bxu"},
	}, {
		name:     "delete_secret response",
		event:    withBodies(t, fixture(t, "delete_secret.json"), nil, `{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}`, secretBody("s", s1, s2)),
		secrets:  []string{s1, s2},
		redacted: []string{"/responseObject/data/api-key", "/responseObject/stringData/password", "/responseObject/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"},
		kept:     []string{`"propagationPolicy":"Background"`},
	}, {
		name:     "merge patch of a secret, with a misspelled field",
		event:    withBodies(t, fixture(t, "create_secret.json"), setObjectRef("secrets", "", "", "patch"), `{"data":{"api-key":"`+b64(s1)+`"},"Data":{"x":`+strconv.Quote(s2)+`}}`, ""),
		secrets:  []string{s1, s2},
		redacted: []string{"/requestObject/Data", "/requestObject/data/api-key"},
	}, {
		name:     "JSON patch of a secret",
		event:    withBodies(t, fixture(t, "create_secret.json"), setObjectRef("secrets", "", "", "patch"), `[{"op":"replace","path":"/data/api-key","value":"`+b64(s1)+`"},{"op":"remove","path":"/data/old"}]`, ""),
		secrets:  []string{s1},
		redacted: []string{"/requestObject/0/value"},
		kept:     []string{`"path":"/data/old"`},
	}, {
		name: "TokenReview spec.token",
		event: withBodies(t, fixture(t, "create_secret.json"), setObjectRef("tokenreviews", "authentication.k8s.io", "", "create"),
			`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"`+tk+`","audiences":["api"]}}`,
			`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"`+tk+`"},"status":{"authenticated":true,"user":{"username":"alice"}}}`),
		secrets:  []string{tk},
		redacted: []string{"/requestObject/spec/token", "/responseObject/spec/token"},
		kept:     []string{`"audiences":["api"]`, `"username":"alice"`},
	}, {
		name: "TokenRequest status.token",
		event: withBodies(t, fixture(t, "create_secret.json"), setObjectRef("serviceaccounts", "", "token", "create"),
			`{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["vault"],"expirationSeconds":600}}`,
			`{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["vault"]},"status":{"token":"`+tk+`","expirationTimestamp":"2026-01-01T00:00:00Z"}}`),
		secrets:  []string{tk},
		redacted: []string{"/responseObject/status/token"},
		kept:     []string{`"expirationTimestamp":"2026-01-01T00:00:00Z"`},
	}, {
		name: "secret not at a secrets endpoint (generic List)",
		event: withBodies(t, fixture(t, "create_deployment.json"), nil, "",
			`{"kind":"List","apiVersion":"v1","items":[{"kind":"Secret","apiVersion":"v1","metadata":{"name":"a"},"data":{"k":"`+b64(s1)+`"}},{"kind":"Deployment","metadata":{"name":"d"}}]}`),
		secrets:  []string{s1},
		redacted: []string{"/responseObject/items/0/data/k"},
		kept:     []string{`"kind":"Deployment"`},
	}, {
		name: "table of secrets with last-applied in metadata",
		event: withBodies(t, fixture(t, "create_secret.json"), setObjectRef("secrets", "", "", "list"), "",
			`{"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[],"rows":[{"cells":["a"],"object":{"kind":"PartialObjectMetadata","metadata":{"name":"a","annotations":{"kubectl.kubernetes.io/last-applied-configuration":`+strconv.Quote(`{"stringData":{"p":"`+s2+`"}}`)+`}}}}]}`),
		secrets:  []string{s2},
		redacted: []string{"/responseObject/rows/0/object/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"},
		kept:     []string{`"cells":["a"]`},
	}, {
		name:     "secret body that is not JSON object is dropped whole",
		event:    withBodies(t, fixture(t, "create_secret.json"), setObjectRef("secrets", "", "", "patch"), strconv.Quote("stringData:\n  p: "+s2), ""),
		secrets:  []string{s2},
		redacted: []string{"/requestObject"},
		failures: 1,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, recordAll, pipeline.Config{})
			require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, tc.event))))
			out := h.prod.records()
			require.Len(t, out, 1)
			require.Equal(t, schemas.DefaultEventsTopic, out[0].Topic, "%s", out[0].Value)
			for _, s := range tc.secrets {
				requireNoSecret(t, out[0].Value, s)
			}
			pe := decodeOut(t, out[0])
			require.ElementsMatch(t, tc.redacted, pe.Pipeline.Redacted)
			for _, k := range tc.kept {
				require.Contains(t, string(out[0].Value), k)
			}
			require.Equal(t, tc.failures, testutil.ToFloat64(h.metrics.RedactionFailures), "auditpipe_processor_redaction_failures_total")
		})
	}
}

// TestConfigMapCredentials: Falco's ConfigMap with AWS keys loses the
// entry that holds them and keeps the harmless one; the ConfigMap without
// credentials is untouched.
func TestConfigMapCredentials(t *testing.T) {
	h := newHarness(t, recordAll, pipeline.Config{})
	lines := strings.Split(strings.TrimSpace(string(fixture(t, "create_configmap_sensitive_values.json"))), "\n")
	for i, l := range lines {
		require.NoError(t, h.p.Handle(t.Context(), batch(raw(int64(i), []byte(l)))))
	}
	out := h.prod.records()
	require.Len(t, out, len(lines))
	for _, r := range out {
		require.Equal(t, schemas.DefaultEventsTopic, r.Topic)
		require.NotContains(t, string(r.Value), "MY-KEY")
		require.Contains(t, string(r.Value), "color.good=purple")
		pe := decodeOut(t, r)
		require.Contains(t, pe.Pipeline.Redacted, "/requestObject/data/access.properties")
	}

	h = newHarness(t, recordAll, pipeline.Config{})
	in := fixture(t, "create_configmap_no_sensitive_values.json")
	require.NoError(t, h.p.Handle(t.Context(), batch(raw(1, in))))
	pe := decodeOut(t, h.prod.records()[0])
	require.Empty(t, pe.Pipeline.Redacted)
	require.NotContains(t, string(h.prod.records()[0].Value), schemas.RedactedValue)
}

// requireNoSecret fails if any encoding of secret in which it could leave
// the processor is in out: as is, base64 (Secret data), JSON-escaped
// (inside strings, and inside the last-applied annotation, which is JSON
// in a JSON string).
// secretForms are the spellings of secret that may appear in an event:
// as is, in base64, JSON-escaped once and twice (a last-applied copy).
func secretForms(secret string) []string {
	forms := []string{secret, b64(secret)}
	q, _ := json.Marshal(secret)
	forms = append(forms, strings.Trim(string(q), `"`))
	qq, _ := json.Marshal(strings.Trim(string(q), `"`))
	return append(forms, strings.Trim(string(qq), `"`))
}

func requireNoSecret(tb testing.TB, out []byte, secret string) {
	tb.Helper()
	for _, f := range secretForms(secret) {
		require.NotContains(tb, string(out), f, "secret value survived processing")
	}
}
