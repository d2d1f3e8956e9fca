package detect

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/schemas"
	"github.com/stretchr/testify/require"
)

func TestPrefiltersOfShippedRules(t *testing.T) {
	set, err := LoadDefault("")
	require.NoError(t, err)
	got := map[string][]prefilter{}
	for _, r := range set.Rules() {
		got[r.ID] = r.prefilters
	}
	require.Equal(t, []prefilter{{"objectRef.resource", []string{"pods"}}, {"objectRef.subresource", []string{"exec", "attach"}},
		{"objectRef.apiGroup", []string{"", "core"}}}, got["exec-into-pod"])
	require.Equal(t, []prefilter{{"objectRef.resource", []string{"secrets"}}, {"objectRef.apiGroup", []string{"", "core"}},
		{"verb", []string{"get", "list", "watch"}}, {"principal.type", []string{"human"}}}, got["secret-read-by-human"])
	require.Equal(t, []prefilter{{"auditpipe.auditIDReused", []string{"true"}}}, got["auditid-reused"])
	// A disjunction is left to CEL.
	require.Equal(t, []prefilter{{"objectRef.namespace", []string{"kube-system"}},
		{"verb", []string{"create", "update", "patch", "delete", "deletecollection"}}}, got["kube-system-change"])
}

// TestPrefiltersChangeNoResult evaluates every fixture with and without
// the prefilters: they may only skip work, never change a result.
func TestPrefiltersChangeNoResult(t *testing.T) {
	set, err := LoadDefault("")
	require.NoError(t, err)
	bare := &Set{}
	for _, r := range set.rules {
		c := *r
		c.prefilters = nil
		bare.rules = append(bare.rules, &c)
	}
	files, err := filepath.Glob("../../testdata/public-audit/*/*.json*")
	require.NoError(t, err)
	n, matched := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n") {
			var ev schemas.Event
			if json.Unmarshal([]byte(line), &ev) != nil {
				if json.Unmarshal(b, &ev) != nil {
					continue
				}
			}
			for _, reused := range []bool{false, true} {
				pl := &schemas.Pipeline{AuditIDReused: reused}
				a, _ := set.Evaluate(&ev, pl)
				want, _ := bare.Evaluate(&ev, pl)
				require.Equal(t, ruleIDs(want), ruleIDs(a), "%s %s", f, ev.AuditID)
				if len(want) > 0 {
					matched++
				}
				n++
			}
		}
	}
	require.Greater(t, n, 1000)
	require.Greater(t, matched, 10, "some events match, so the comparison means something")
}

func ruleIDs(rules []*Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.ID)
	}
	return out
}
