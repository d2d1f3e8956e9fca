package audittest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadFindsEventsAndProblems(t *testing.T) {
	fx := Load(t, Dir(t))
	evs := Events(fx)
	// SOURCES.md: 794 audit2rbac + 52 falco values + 25 stackdriver events;
	// fal_01_003.json is malformed on purpose.
	require.Greater(t, len(evs), 800)
	var problems []string
	for _, f := range fx {
		if f.Event == nil {
			problems = append(problems, f.File+": "+f.Problem)
		}
	}
	require.NotEmpty(t, problems)
	for _, p := range problems {
		require.Contains(t, p, "fal_01_003.json", "only the deliberate malformed fixture should fail: %v", problems)
	}
}
