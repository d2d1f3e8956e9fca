package allinone

import (
	"log/slog"
	"runtime/debug"
)

// ApplyMemoryLimit sets the process's soft memory limit to
// cfg.MemoryLimitBytes (nothing when it is 0) and returns a function that
// restores the previous limit. The limit is process-wide state, so the
// program sets it, not Start: tests run several pipelines in one process.
func ApplyMemoryLimit(cfg Config, logger *slog.Logger) (restore func()) {
	if cfg.MemoryLimitBytes == 0 {
		return func() {}
	}
	prev := debug.SetMemoryLimit(cfg.MemoryLimitBytes)
	logger.Debug("Go memory limit set", "bytes", cfg.MemoryLimitBytes, "previous", prev)
	return func() { debug.SetMemoryLimit(prev) }
}
