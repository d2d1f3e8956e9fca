package main

import (
	"bytes"
	"github.com/auditpipe/auditpipe/internal/cli"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRulesTestCommand(t *testing.T) {
	const falco = "../../../testdata/public-audit/falco/"
	demo := "../../../testdata/public-audit/audit2rbac/demo.v1.jsonl"
	b, err := os.ReadFile(demo)
	require.NoError(t, err)
	demoEvents := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			demoEvents++
		}
	}
	user := filepath.Join(t.TempDir(), "rules.yaml")
	require.NoError(t, os.WriteFile(user, []byte(`rules:
  - id: nodeport-service
    description: switched off here
    severity: low
    enabled: false
    condition: "true"
  - id: namespace-created
    description: any namespace creation
    severity: info
    condition: objectRef.resource == "namespaces" && verb == "create"
`), 0o600))
	var out, errOut bytes.Buffer
	err = runRulesTest(t.Context(), []string{"--rules", user, falco + "exec_pod.json", falco + "attach_pod.json",
		falco + "create_nginx_pod_privileged.json", falco + "create_nginx_service_nodeport.json",
		falco + "some-user_creates_namespace_foo.json", demo}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	s := out.String()
	t.Log(s)
	row := func(rule string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(rule) + `\s+\S+\s+(\S+)`).FindStringSubmatch(s)
		require.NotNil(t, m, rule)
		return m[1]
	}
	require.Equal(t, "2", row("exec-into-pod"))
	require.Equal(t, "1", row("privileged-pod"))
	require.Equal(t, "0", row("cluster-admin-binding"))
	require.Equal(t, "off", row("nodeport-service"))
	require.Equal(t, "1", row("namespace-created"))
	require.Regexp(t, `(?m)^events\s+`+strconv.Itoa(5+demoEvents)+`\s*$`, s)
	require.Contains(t, s, "exec-into-pod  "+falco+"exec_pod.json line 1: create default/pods/exec/")

	require.ErrorContains(t, runRulesTest(t.Context(), nil, &out, &errOut), "need at least one events file")
	out.Reset()
	require.ErrorIs(t, runRulesTest(t.Context(), []string{"--help"}, &out, &errOut), cli.ErrHelp)
	require.Contains(t, out.String(), "usage: processor rules test", "help goes to stdout")
	err = runRulesTest(t.Context(), []string{falco + "fal_01_003.json"}, &out, &errOut)
	require.ErrorContains(t, err, "fal_01_003.json: line 1")
}
