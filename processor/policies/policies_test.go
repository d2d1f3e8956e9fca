package policies_test

import (
	"os"
	"testing"

	"github.com/auditpipe/auditpipe/processor/policies"
	"github.com/auditpipe/auditpipe/processor/policy"
	"github.com/stretchr/testify/require"
)

func TestEmbeddedPoliciesLoad(t *testing.T) {
	for name, data := range map[string][]byte{policies.TKEDefaultName: policies.TKEDefault, policies.LeanName: policies.Lean} {
		onDisk, err := os.ReadFile(name)
		require.NoError(t, err)
		require.Equal(t, onDisk, data)
		p, err := policy.Load(name, data)
		require.NoError(t, err)
		require.Equal(t, name, p.Name())
	}
}
