package main

import (
	"os"
	"path/filepath"

	"bytes"
	"github.com/auditpipe/auditpipe/internal/cli"
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
		{[]string{"--policy", "../../policies/nope.yaml", "--metrics-listen", ""}, "nope.yaml"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		var stdout, stderr bytes.Buffer
		err := program().Run(t.Context(), tc.args, &stdout, &stderr)
		require.Error(t, err, "%v", tc.args)
		require.Contains(t, err.Error()+stderr.String(), tc.want, "%v", tc.args)
	}
}

func TestPolicyTestCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runPolicyTest(t.Context(), []string{"--policy", "../../policies/lean.yaml",
		"../../../testdata/public-audit/audit2rbac/demo.v1.jsonl", "../../../testdata/public-audit/falco/create_secret.json"}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	s := out.String()
	require.Contains(t, s, "bytes before")
	require.Regexp(t, `(?m)^\s+total\s+\d+\s+\d+\s+\d+\s+\d+\s*$`, s)
	require.Regexp(t, `(?m)^\s+none\s+None`, s)

	err = runPolicyTest(t.Context(), []string{"--policy", "../../policies/lean.yaml", "../../../testdata/public-audit/falco/fal_01_003.json"}, &out, &errOut)
	require.ErrorContains(t, err, "fal_01_003.json: line 1")
	require.ErrorContains(t, runPolicyTest(t.Context(), nil, &out, &errOut), "need --policy")
	out.Reset()
	require.ErrorIs(t, runPolicyTest(t.Context(), []string{"--help"}, &out, &errOut), cli.ErrHelp)
	require.Contains(t, out.String(), "usage: processor policy test", "help goes to stdout")
	require.Empty(t, errOut.String())
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	require.NoError(t, os.WriteFile(good, []byte("kafka:\n  brokers: [\"${PROCESSOR_TEST_BROKER}\"]\npolicy: ../../policies/tke-default.yaml\nmetrics:\n  listen: \"\"\n"), 0o600))
	t.Setenv("PROCESSOR_TEST_BROKER", "kafka-0:9093")
	var out, errOut bytes.Buffer
	require.NoError(t, program().Run(t.Context(), []string{"validate", "--config", good}, &out, &errOut))
	require.Equal(t, "processor: config is valid\n", out.String())

	badPolicy := filepath.Join(dir, "bad-policy.yaml")
	require.NoError(t, os.WriteFile(badPolicy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n"), 0o600))
	err := program().Run(t.Context(), []string{"validate", "--config", good, "--policy", badPolicy}, &out, &errOut)
	require.ErrorContains(t, err, "bad-policy.yaml")

	unknown := filepath.Join(dir, "unknown.yaml")
	require.NoError(t, os.WriteFile(unknown, []byte("kafka:\n  brokers: [k:1]\npolicy: x\nfleetFile: y\n"), 0o600))
	require.ErrorContains(t, program().Run(t.Context(), []string{"validate", "--config", unknown}, &out, &errOut), `unknown field "fleetFile"`)

	out.Reset()
	require.NoError(t, program().Run(t.Context(), []string{"version"}, &out, &errOut))
	require.Regexp(t, `^processor \S+ \(\S+, go\S+\)\n$`, out.String())
}
