package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRunRejectsBadFlags checks the flag handling that happens before any
// connection is made.
func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "policy"},
		{[]string{"--policy", "../../policies/tke-default.yaml", "--brokers", " , "}, "brokers"},
		{[]string{"--policy", "../../policies/tke-default.yaml", "--topic-dlq", "audit.events"}, "dlq"},
		{[]string{"--policy", "../../policies/tke-default.yaml", "--log-level", "loud"}, "log-level"},
		{[]string{"--policy", "../../policies/nope.yaml", "--metrics-addr", ""}, "nope.yaml"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		var stderr bytes.Buffer
		err := run(t.Context(), tc.args, &stderr)
		require.Error(t, err, "%v", tc.args)
		require.Contains(t, err.Error()+stderr.String(), tc.want, "%v", tc.args)
	}
}

func TestPolicyTestCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runPolicyTest([]string{"--policy", "../../policies/lean.yaml",
		"../../../testdata/public-audit/audit2rbac/demo.v1.jsonl", "../../../testdata/public-audit/falco/create_secret.json"}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	s := out.String()
	require.Contains(t, s, "bytes before")
	require.Regexp(t, `(?m)^\s+total\s+\d+\s+\d+\s+\d+\s+\d+\s*$`, s)
	require.Regexp(t, `(?m)^\s+none\s+None`, s)

	err = runPolicyTest([]string{"--policy", "../../policies/lean.yaml", "../../../testdata/public-audit/falco/fal_01_003.json"}, &out, &errOut)
	require.ErrorContains(t, err, "fal_01_003.json: line 1")
	require.Error(t, runPolicyTest(nil, &out, &errOut))
	require.Contains(t, errOut.String(), "usage: processor policy test")
}
