// Package migrate copies the events of one local store into another,
// typically from the SQLite engine to VictoriaLogs' (decision 0026, step
// 5): `consumer store migrate`. It reads the source a page at a time in
// its stored order (eventstore.Exporter) and writes each page to the
// destination with the ordinary Write, so the destination applies its
// own rules: identity and content dedup (a second run, or a run resumed
// from an earlier position, only counts duplicates), the reused-auditID
// marker, its own limits. Nothing is transformed on the way.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// Options tune a run; the zero value is usable.
type Options struct {
	// BatchSize is the events per page and Write. Default 1,000.
	BatchSize int
	// After resumes after this source position (a Progress.Position of an
	// earlier run); "" starts at the beginning.
	After string
	// Report receives the progress every ReportEvery and once at the end.
	Report func(Progress)
	// ReportEvery defaults to 5 s.
	ReportEvery time.Duration
}

// Progress is what a run has done so far.
type Progress struct {
	// Total is the source's event count when the run started.
	Total int64
	// Read, Inserted, Duplicates and Reused count the events read from
	// the source and what the destination made of them (Reused are in
	// Inserted too).
	Read, Inserted, Duplicates, Reused int64
	// Invalid are the events the destination could not store (its
	// limits); FirstInvalid says why for the first one.
	Invalid      int64
	FirstInvalid string
	// Position is the source position up to which everything read is
	// durable in the destination: pass it as Options.After to resume.
	Position string
	Elapsed  time.Duration
	Done     bool
}

// Run copies every event of from after opts.After into to. It makes the
// destination durable (eventstore.Syncer) before each report, so that a
// reported Position can be resumed from, and at the end. An error names
// the position to resume from.
func Run(ctx context.Context, from eventstore.Exporter, to eventstore.Writer, opts Options) (Progress, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = 5 * time.Second
	}
	start := time.Now()
	p := Progress{Position: opts.After}
	total, err := from.Count(ctx)
	if err != nil {
		return p, fmt.Errorf("migrate: %w", err)
	}
	p.Total = total
	sync := func() error {
		if s, ok := to.(eventstore.Syncer); ok {
			return s.Sync(ctx)
		}
		return nil
	}
	pos := opts.After // read up to here; p.Position: durable up to there
	lastReport := start
	for {
		values, next, err := from.Export(ctx, pos, opts.BatchSize)
		if err != nil {
			return p, fmt.Errorf("migrate: read the source after position %q (resume with that position): %w", p.Position, err)
		}
		if len(values) == 0 {
			break
		}
		res, err := to.Write(ctx, values)
		if err != nil {
			return p, fmt.Errorf("migrate: write %d events read after source position %q (resume from %q): %w", len(values), pos, p.Position, err)
		}
		p.Read += int64(len(values))
		p.Inserted += int64(res.Inserted)
		p.Duplicates += int64(res.Duplicates)
		p.Reused += int64(res.Reused)
		p.Invalid += int64(res.Invalid)
		if res.Invalid > 0 && p.FirstInvalid == "" {
			first := res.InvalidValues[0]
			p.FirstInvalid = fmt.Sprintf("event %d of the page after source position %q: %s", first.Index, pos, first.Reason)
		}
		pos = next
		if time.Since(lastReport) >= opts.ReportEvery {
			if err := sync(); err != nil {
				return p, fmt.Errorf("migrate: make the destination durable (resume from %q): %w", p.Position, err)
			}
			p.Position, p.Elapsed = pos, time.Since(start)
			lastReport = time.Now()
			if opts.Report != nil {
				opts.Report(p)
			}
		}
	}
	if err := sync(); err != nil {
		return p, fmt.Errorf("migrate: make the destination durable (resume from %q): %w", p.Position, err)
	}
	p.Position, p.Elapsed, p.Done = pos, time.Since(start), true
	if opts.Report != nil {
		opts.Report(p)
	}
	if p.Invalid > 0 {
		return p, fmt.Errorf("migrate: %w: %d of %d events (first: %s)", ErrNotStored, p.Invalid, p.Read, p.FirstInvalid)
	}
	return p, nil
}

// ErrNotStored: the destination refused some events (they stay in the
// source).
var ErrNotStored = errors.New("the destination could not store some events")
