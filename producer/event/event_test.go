package event

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	body := strings.Repeat("b", 3000)
	cases := []struct {
		name, item   string
		truncated    bool
		reason, want string
	}{
		{"fits: bytes as sent", `{ "auditID":"a", "stage":"ResponseComplete" }`, false, "", `{ "auditID":"a", "stage":"ResponseComplete" }`},
		{"bodies dropped, annotation added", `{"auditID":"a","stage":"s","annotations":null,"requestObject":"` + body + `"}`, true, "", `{"annotations":{"audit.k8s.io/truncated":"true"},"auditID":"a","stage":"s"}`},
		{"existing annotations kept", `{"auditID":"a","stage":"s","annotations":{"k":"v"},"responseObject":"` + body + `"}`, true, "", `{"annotations":{"audit.k8s.io/truncated":"true","k":"v"},"auditID":"a","stage":"s"}`},
		{"annotations not a map", `{"auditID":"a","stage":"s","annotations":[1],"responseObject":"` + body + `"}`, false, "annotations are not a string map", ""},
		{"still too large", `{"auditID":"a","stage":"s","requestURI":"` + body + `"}`, false, "even without requestObject and responseObject", ""},
		{"not an event", `[1,2]`, false, "not a JSON object", ""},
		{"wrong kind", `{"kind":"Pod","auditID":"a","stage":"s"}`, false, `kind "Pod"`, ""},
	}
	for _, c := range cases {
		_, value, truncated, reason := Classify([]byte(c.item), 1024)
		require.Equal(t, c.truncated, truncated, c.name)
		if c.reason != "" {
			require.Contains(t, reason, c.reason, c.name)
			require.LessOrEqual(t, len(value), 1024, c.name)
			continue
		}
		require.Empty(t, reason, c.name)
		require.JSONEq(t, c.want, string(value), c.name)
		if !truncated {
			require.Equal(t, c.want, string(value), "%s: exact bytes", c.name)
		}
	}
}
