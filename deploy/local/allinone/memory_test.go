package allinone

import (
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestApplyMemoryLimit: the configured limit is the process's while the
// program runs, and the previous one comes back; 0 changes nothing.
func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1) // -1 reads the limit
	logger := slog.New(slog.DiscardHandler)

	restore := ApplyMemoryLimit(DefaultConfig(), logger)
	require.Equal(t, int64(DefaultMemoryLimitBytes), debug.SetMemoryLimit(-1))
	restore()
	require.Equal(t, before, debug.SetMemoryLimit(-1))

	cfg := DefaultConfig()
	cfg.MemoryLimitBytes = 0
	restore = ApplyMemoryLimit(cfg, logger)
	require.Equal(t, before, debug.SetMemoryLimit(-1))
	restore()
	require.Equal(t, before, debug.SetMemoryLimit(-1))
}

func TestMemoryLimitValidation(t *testing.T) {
	cfg := DefaultConfig()
	require.NoError(t, cfg.Validate())
	require.Equal(t, int64(DefaultMaxInflightBytes), cfg.Webhook.MaxInflightBytes)

	for name, tc := range map[string]struct {
		limit, inflight int64
		want            string // "" means valid
	}{
		"off":                    {0, DefaultMaxInflightBytes, ""},
		"smallest":               {128 << 20, 64 << 20, ""},
		"too small":              {100 << 20, DefaultMaxInflightBytes, "memoryLimitBytes: 104857600 is below"},
		"negative":               {-1, DefaultMaxInflightBytes, "memoryLimitBytes: -1 is below"},
		"body budget fills half": {384 << 20, 256 << 20, "must be at least twice webhook.maxInflightBytes"},
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MemoryLimitBytes, cfg.Webhook.MaxInflightBytes = tc.limit, tc.inflight
			cfg.Webhook.MaxBodyBytes = 32 << 20 // below every budget here
			err := cfg.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
