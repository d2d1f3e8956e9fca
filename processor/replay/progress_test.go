package replay_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/processor/replay"
)

func TestProgressLine(t *testing.T) {
	p := replay.Progress{Done: 300, Total: 1000, DoneThisRun: 200, Bytes: 3 << 20, EventsOut: 150, Elapsed: 2 * time.Second}
	require.InDelta(t, 100.0, p.Rate(), 0.001, "rate counts this run only")
	require.Equal(t, 7*time.Second, p.ETA())
	require.Equal(t, "300/1000 events (30.0%), 3.0 MiB read, 150 kept, 100 events/s, ETA 7s", p.String())
	require.Equal(t, time.Duration(0), replay.Progress{Total: 10}.ETA(), "no rate yet: no ETA")
	require.Equal(t, "512 B", replay.HumanBytes(512))
	require.Equal(t, "1.5 KiB", replay.HumanBytes(1536))
}

func TestProgressPrinterPlainLines(t *testing.T) {
	var buf bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	calls := 0
	go func() {
		defer close(done)
		replay.ProgressPrinter{W: &buf, Interval: time.Millisecond}.Run(ctx, func() replay.Progress {
			calls++
			if calls == 3 {
				cancel()
			}
			return replay.Progress{Done: int64(calls), Total: 10}
		})
	}()
	<-done
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	for _, l := range lines {
		require.True(t, strings.HasPrefix(l, "replay: "), l)
		require.NotContains(t, l, "\r", "no terminal control characters when not a terminal")
	}
	require.False(t, replay.IsTerminal(&buf))
}
