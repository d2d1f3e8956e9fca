package policy_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/stretchr/testify/require"
)

const managed = `[{"manager":"kubectl","operation":"Apply","apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:data":{}}}]`

// withManagedFields adds metadata.managedFields to a JSON object.
func withManagedFields(tb testing.TB, obj json.RawMessage) json.RawMessage {
	tb.Helper()
	var m map[string]any
	require.NoError(tb, json.Unmarshal(obj, &m))
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	var mf any
	require.NoError(tb, json.Unmarshal([]byte(managed), &mf))
	meta["managedFields"] = mf
	m["metadata"] = meta
	out, err := json.Marshal(m)
	require.NoError(tb, err)
	return out
}

func TestOmitManagedFields(t *testing.T) {
	ev := readEvent(t, "create_clusterrole.json")
	obj := withManagedFields(t, ev.ResponseObject)
	list := json.RawMessage(`{"kind":"ClusterRoleList","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[` +
		string(obj) + `,` + string(withManagedFields(t, ev.RequestObject)) + `]}`)
	table := json.RawMessage(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","rows":[{"cells":["a"],"object":` + string(obj) + `}]}`)

	for name, tc := range map[string]struct {
		policy string
		omit   bool
	}{
		"policy-wide":           {"omitManagedFields: true\nrules:\n- level: RequestResponse\n", true},
		"rule overrides policy": {"omitManagedFields: true\nrules:\n- level: RequestResponse\n  omitManagedFields: false\n", false},
		"rule only":             {"rules:\n- level: RequestResponse\n  omitManagedFields: true\n", true},
		"off by default":        {"rules:\n- level: RequestResponse\n", false},
	} {
		t.Run(name, func(t *testing.T) {
			p := mustLoad(t, "apiVersion: audit.k8s.io/v1\nkind: Policy\n"+tc.policy)
			for body, in := range map[string]json.RawMessage{"object": obj, "list": list, "table": table} {
				ev := readEvent(t, "create_clusterrole.json")
				ev.RequestObject, ev.ResponseObject = withManagedFields(t, ev.RequestObject), in
				d, err := p.Apply(&ev)
				require.NoError(t, err)
				require.Equal(t, tc.omit, d.OmitManagedFields)
				for _, b := range []json.RawMessage{ev.RequestObject, ev.ResponseObject} {
					require.Equal(t, !tc.omit, strings.Contains(string(b), "managedFields"), "%s: %s", body, b)
				}
				if tc.omit {
					// Everything else is kept.
					require.Contains(t, string(ev.ResponseObject), `"name":"some-reader"`)
				}
			}
		})
	}
}

func TestWithoutManagedFieldsLeavesOtherBodiesAlone(t *testing.T) {
	for _, in := range []string{``, `null`, `"managedFields"`, `[{"metadata":{"managedFields":[]}}]`, `{"metadata":"managedFields"}`, `{"a":"<b>&"}`} {
		out, err := policy.WithoutManagedFields(json.RawMessage(in))
		require.NoError(t, err)
		require.Equal(t, in, string(out))
	}
	out, err := policy.WithoutManagedFields(json.RawMessage(`{"z":"<&>","metadata":{"name":"a","managedFields":[]}}`))
	require.NoError(t, err)
	require.JSONEq(t, `{"z":"<&>","metadata":{"name":"a"}}`, string(out))
	require.Contains(t, string(out), `"<&>"`, "HTML characters must not be escaped")
}
