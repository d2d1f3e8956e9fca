package replay

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// ProgressPrinter writes a replay's progress to a terminal (one line,
// rewritten in place) or, when the output is not a terminal (a log file, a
// CI job), as plain lines at a slower pace so logs stay readable.
type ProgressPrinter struct {
	W io.Writer
	// TTY selects the rewriting line; IsTerminal(W) is a good default.
	TTY bool
	// Interval between updates. Default 500ms on a terminal, 10s
	// otherwise.
	Interval time.Duration
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Run prints progress() until ctx ends, then prints it a last time and,
// on a terminal, ends the line.
func (p ProgressPrinter) Run(ctx context.Context, progress func() Progress) {
	interval := p.Interval
	if interval <= 0 {
		interval = 10 * time.Second
		if p.TTY {
			interval = 500 * time.Millisecond
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.print(progress())
			if p.TTY {
				fmt.Fprintln(p.W)
			}
			return
		case <-t.C:
			p.print(progress())
		}
	}
}

func (p ProgressPrinter) print(pr Progress) {
	if p.TTY {
		// \r and erase-to-end-of-line: the line shrinks cleanly.
		fmt.Fprintf(p.W, "\r\x1b[Kreplay: %s", pr)
		return
	}
	fmt.Fprintf(p.W, "replay: %s\n", pr)
}
