package fleet

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func write(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "fleet.yaml")
	require.NoError(t, os.WriteFile(p, []byte(s), 0o600))
	return p
}

func TestLoadFile(t *testing.T) {
	r, err := LoadFile(write(t, `
defaults:
  policy: /p/default.yaml
clusters:
  prod-eu-1:
    displayName: Production EU 1
    region: eu-frankfurt
    environment: production
    owner: team-platform
    policy: /p/strict.yaml
    cls: {topicID: abc}
  dev-1:
    cls: {logset: audit, topicName: dev-1}
`))
	require.NoError(t, err)
	c, ok := r.Cluster("prod-eu-1")
	require.True(t, ok)
	require.Equal(t, "Production EU 1", c.DisplayName)
	require.Equal(t, "abc", c.CLS.TopicID)
	require.Equal(t, "/p/strict.yaml", r.PolicyFor("prod-eu-1"))
	require.Equal(t, "/p/default.yaml", r.PolicyFor("dev-1"))
	require.Equal(t, "/p/default.yaml", r.PolicyFor("unknown"))
	var nilReg *Registry
	require.Equal(t, "", nilReg.PolicyFor("x"))
}

func TestLoadFileRejects(t *testing.T) {
	for name, body := range map[string]string{
		"unknown key":          "clusters:\n  c1:\n    regoin: x\n",
		"bad id":               "clusters:\n  Prod_EU:\n    region: x\n",
		"topic and logset":     "clusters:\n  c1:\n    cls: {topicID: a, logset: b, topicName: c}\n",
		"logset without topic": "clusters:\n  c1:\n    cls: {logset: b}\n",
	} {
		_, err := LoadFile(write(t, body))
		require.Error(t, err, name)
		t.Log(err)
	}
	_, err := LoadFile(write(t, "clusters:\n  c1:\n    regoin: x\n"))
	require.ErrorContains(t, err, `"clusters.c1.regoin"`)
}
