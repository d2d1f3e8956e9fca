package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Runner measures one unit.
type Runner func(ctx context.Context, u Unit) (Result, error)

// InProcess runs units in this process. Peak RSS is then the process's
// peak so far, which only grows: say so in RSSScope.
func InProcess(o Options, logger *slog.Logger) Runner {
	var tpl *Templates // loaded once, shared by the units
	return func(ctx context.Context, u Unit) (Result, error) {
		if tpl == nil {
			var err error
			if tpl, err = LoadTemplates(o.Fixtures); err != nil {
				return Result{Unit: u}, err
			}
		}
		res, err := runUnit(ctx, o, u, tpl, logger)
		res.PeakRSSBytes, res.RSSScope = SelfMaxRSS(), "whole harness process so far (in-process run)"
		return res, err
	}
}

// UnitFlag is the flag that makes the harness binary run a single unit and
// print its Result as JSON on stdout.
const UnitFlag = "unit"

// Subprocess runs every unit as `exe args... --unit <json>`, so that each
// unit's peak RSS is its own process's. args must carry the options
// (the same flags the parent got).
func Subprocess(exe string, args []string, stderr io.Writer) Runner {
	return func(ctx context.Context, u Unit) (Result, error) {
		spec, err := json.Marshal(u)
		if err != nil {
			return Result{Unit: u}, err
		}
		cmd := exec.CommandContext(ctx, exe, append(append([]string{}, args...), "--"+UnitFlag, string(spec))...)
		var out bytes.Buffer
		cmd.Stdout = &out
		if stderr != nil {
			cmd.Stderr = stderr
		}
		runErr := cmd.Run()
		var res Result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			if runErr != nil {
				return Result{Unit: u}, fmt.Errorf("unit subprocess: %w", runErr)
			}
			return Result{Unit: u}, fmt.Errorf("unit subprocess printed no result: %w", err)
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.PeakRSSBytes = maxRSSBytes(ru)
		}
		res.RSSScope = "unit subprocess (harness, clients" + map[bool]string{true: ", in-process broker)", false: ")"}[u.Broker == BrokerEmbedded]
		if res.Error != "" {
			return res, fmt.Errorf("%s", res.Error)
		}
		if runErr != nil {
			return res, fmt.Errorf("unit subprocess: %w", runErr)
		}
		return res, nil
	}
}

// RunChild is the subprocess side of Subprocess: run the unit given as
// JSON and print its Result, with the error inside it, on stdout.
func RunChild(ctx context.Context, o Options, unitJSON string, logger *slog.Logger) error {
	var u Unit
	if err := json.Unmarshal([]byte(unitJSON), &u); err != nil {
		return fmt.Errorf("--%s %q: %w", UnitFlag, unitJSON, err)
	}
	res, err := RunUnit(ctx, o, u, logger)
	if err != nil {
		res.Error = err.Error()
	}
	res.PeakRSSBytes = SelfMaxRSS()
	enc := json.NewEncoder(os.Stdout)
	if eerr := enc.Encode(res); eerr != nil {
		return eerr
	}
	return err
}

// Run measures every unit of o with run and returns the report. A unit
// that fails is reported with its error and the run goes on; the returned
// error then lists the failed units.
func Run(ctx context.Context, o Options, run Runner, logger *slog.Logger) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	tpl, err := LoadTemplates(o.Fixtures)
	if err != nil {
		return nil, err
	}
	rep := &Report{Schema: SchemaVersion, Started: time.Now().UTC(), Host: thisHost(), Options: o, EventBytes: tpl.Sizes(),
		Command: strings.Join(os.Args, " "), NotMeasured: notMeasured(o)}
	var failed []string
	for _, u := range Units(o) {
		logger.Info("measuring", "unit", u.String())
		res, err := run(ctx, u)
		res.Unit, res.LatencyOf = u, latencyOf(u)
		if err != nil {
			res.Error = err.Error()
			failed = append(failed, u.String())
			logger.Error("unit failed", "unit", u.String(), "err", err)
		}
		rep.Results = append(rep.Results, res)
		if ctx.Err() != nil {
			break
		}
	}
	compare(rep.Results)
	rep.Seconds = time.Since(rep.Started).Seconds()
	if len(failed) > 0 {
		return rep, fmt.Errorf("units failed: %s", strings.Join(failed, ", "))
	}
	return rep, nil
}

// notMeasured lists the legs the harness does not cover.
func notMeasured(o Options) []string {
	var out []string
	if !slices.Contains(o.Stages, StageCLS) {
		out = append(out, "consumer events → local CLS server (stage "+StageCLS+" not selected)")
	}
	return out
}

// ResultFile is where a report of a run started at t is written in dir.
func ResultFile(dir string, t time.Time) string {
	return filepath.Join(dir, t.UTC().Format("2006-01-02T150405Z")+".json")
}
