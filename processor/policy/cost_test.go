package policy_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/stretchr/testify/require"
)

func TestCostOnAudit2rbac(t *testing.T) {
	data, err := os.ReadFile("../../testdata/public-audit/audit2rbac/demo.v1.jsonl")
	require.NoError(t, err)
	lines := len(strings.Split(strings.TrimSpace(string(data)), "\n"))
	pol, err := policy.LoadFile("../policies/lean.yaml")
	require.NoError(t, err)
	costs, err := pol.Cost(bytes.NewReader(data))
	require.NoError(t, err)
	require.Len(t, costs, pol.Rules()+1)
	events := 0
	var before int64
	for _, c := range costs {
		events += c.Events
		before += c.BytesBefore
		require.LessOrEqual(t, c.BytesAfter, c.BytesBefore, "rule %d never grows events", c.Rule)
		require.LessOrEqual(t, c.Dropped, c.Events)
		if c.Level == policy.LevelNone {
			require.Equal(t, c.Events, c.Dropped, "rule %d", c.Rule)
			require.Zero(t, c.BytesAfter)
		}
	}
	require.Equal(t, lines, events)
	require.Equal(t, int64(len(bytes.TrimSpace(data))-(lines-1)), before, "bytes before are the lines without newlines")

	// An EventList as the whole input.
	list := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(strings.Split(strings.TrimSpace(string(data)), "\n")[:3], ",") + `]}`
	costs, err = pol.Cost(strings.NewReader(list))
	require.NoError(t, err)
	events = 0
	for _, c := range costs {
		events += c.Events
	}
	require.Equal(t, 3, events)
}
