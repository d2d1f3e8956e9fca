package policy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

// FuzzAttributes feeds arbitrary events (seeded with every public
// fixture) to attribute extraction and to the apiserver's evaluator
// through both shipped policies. Extraction must not panic, must copy the
// event's identity fields as they are, must give the evaluator a path
// without a query, and a decision must never raise the level.
func FuzzAttributes(f *testing.F) {
	files, err := filepath.Glob("../../testdata/public-audit/*/*.json*")
	require.NoError(f, err)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(f, err)
		line, _, _ := strings.Cut(string(b), "\n")
		f.Add([]byte(line))
	}
	f.Add([]byte(`{"level":"RequestResponse","verb":"get","requestURI":"/healthz?verbose%zz","user":{"username":"system:unsecured"}}`))
	f.Add([]byte(`{"level":"Metadata","verb":"list","requestURI":"%%%?a=b","objectRef":{"resource":"x","subresource":"y/z"}}`))
	var pols []*policy.Policy
	for name, data := range map[string][]byte{policies.TKEDefaultName: policies.TKEDefault, "lean": policies.Lean} {
		p, err := policy.Load(name, data)
		require.NoError(f, err)
		pols = append(pols, p)
	}
	rank := map[string]int{policy.LevelNone: 0, policy.LevelMetadata: 1, policy.LevelRequest: 2, policy.LevelRequestResponse: 3}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var ev schemas.Event
		if json.Unmarshal(raw, &ev) != nil {
			return
		}
		a := policy.Attributes(&ev)
		require.Equal(t, ev.User.Username, a.GetUser().GetName())
		require.Equal(t, ev.User.Groups, a.GetUser().GetGroups())
		require.Equal(t, ev.Verb, a.GetVerb())
		require.NotContains(t, a.GetPath(), "?")
		require.Equal(t, ev.ObjectRef != nil, a.IsResourceRequest())
		if ev.ObjectRef != nil {
			require.Equal(t, ev.ObjectRef.Resource, a.GetResource())
			require.Equal(t, ev.ObjectRef.Subresource, a.GetSubresource())
			require.Equal(t, ev.ObjectRef.Namespace, a.GetNamespace())
			require.Equal(t, ev.ObjectRef.APIGroup, a.GetAPIGroup())
		}
		for _, p := range pols {
			before := ev.Level
			e := ev
			d, err := p.Apply(&e)
			if err != nil {
				_, known := rank[before]
				require.False(t, known, "only an unknown level is an error: %v", err)
				continue
			}
			if !d.Drop {
				require.LessOrEqual(t, rank[e.Level], rank[before], "never raises a level")
			}
		}
	})
}
