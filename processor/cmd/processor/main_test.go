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
