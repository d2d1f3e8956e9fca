package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"
)

// SchemaVersion identifies the JSON layout of a Report; bump it when a
// field changes meaning so that comparisons across runs stay honest.
const SchemaVersion = "auditpipe-bench/v1"

// Stat is the minimum and the median of a figure over the measured rounds.
type Stat struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
}

// Summary holds a unit's figures over its measured rounds.
type Summary struct {
	EventsPerSec  Stat `json:"eventsPerSec"`
	MBPerSec      Stat `json:"mbPerSec"`
	CPUSecPer100k Stat `json:"cpuSecondsPer100kEvents"`
	P50Ms         Stat `json:"p50Ms"`
	P99Ms         Stat `json:"p99Ms"`
}

// Ratio compares a stage's medians with its baseline's.
type Ratio struct {
	// EventsPerSec is stage/baseline throughput: 0.5 means the stage moves
	// half as many events per second as Kafka alone.
	EventsPerSec float64 `json:"eventsPerSec"`
	// CPUPerEvent is stage/baseline CPU per event: 3 means three times the
	// CPU of moving the bytes.
	CPUPerEvent float64 `json:"cpuPerEvent"`
}

// Result is the outcome of one unit.
type Result struct {
	Unit
	// LatencyOf says what p50 and p99 measure for this unit.
	LatencyOf string  `json:"latencyOf"`
	Rounds    []Round `json:"rounds"`
	Summary   Summary `json:"summary"`
	// PeakRSSBytes is the peak resident set size; RSSScope says of what.
	PeakRSSBytes int64  `json:"peakRssBytes"`
	RSSScope     string `json:"rssScope"`
	// VsBaseline is set on stage and paced variants when the baseline of
	// the same broker and stage succeeded.
	VsBaseline *Ratio `json:"vsBaseline,omitempty"`
	// VsFranz compares every other unit with the franz-go pass-through
	// (stage franz) of the same broker, when that one succeeded.
	VsFranz *Ratio `json:"vsFranz,omitempty"`
	// Error is why the unit has no figures.
	Error string `json:"error,omitempty"`
}

// Host describes the machine, for comparing runs.
type Host struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
}

// Report is a whole run.
type Report struct {
	Schema  string    `json:"schema"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Command string    `json:"command"`
	Host    Host      `json:"host"`
	Options Options   `json:"options"`
	// EventBytes is the mean encoded size per level of the generated
	// events.
	EventBytes map[string]int `json:"eventBytes"`
	Results    []Result       `json:"results"`
	// NotMeasured lists legs the harness cannot measure yet, and why.
	NotMeasured []string `json:"notMeasured,omitempty"`
}

func thisHost() Host {
	return Host{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
}

func summarize(rounds []Round) Summary {
	var eps, mbps, cpu, p50, p99 []float64
	for _, r := range rounds {
		if r.Seconds <= 0 || r.Events == 0 {
			continue
		}
		eps = append(eps, float64(r.Events)/r.Seconds)
		mbps = append(mbps, float64(r.Bytes)/1e6/r.Seconds)
		cpu = append(cpu, r.CPUSeconds/float64(r.Events)*100_000)
		p50 = append(p50, r.P50Ms)
		p99 = append(p99, r.P99Ms)
	}
	return Summary{EventsPerSec: stat(eps), MBPerSec: stat(mbps), CPUSecPer100k: stat(cpu), P50Ms: stat(p50), P99Ms: stat(p99)}
}

func stat(v []float64) Stat {
	if len(v) == 0 {
		return Stat{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Min: s[0], Median: med}
}

// compare sets VsBaseline on every stage result whose baseline (same
// broker, same stage) has figures, and VsFranz on every result but the
// franz-go pass-through itself when that one (same broker) has figures.
func compare(results []Result) {
	for i := range results {
		r := &results[i]
		if r.Error != "" || r.Stage == StageFranz {
			continue
		}
		for _, b := range results {
			if b.Broker != r.Broker || b.Variant != VariantBaseline || b.Error != "" {
				continue
			}
			switch {
			case b.Stage == r.Stage && r.Variant == VariantStage:
				r.VsBaseline = ratio(r.Summary, b.Summary)
			case b.Stage == StageFranz:
				r.VsFranz = ratio(r.Summary, b.Summary)
			}
		}
	}
}

// ratio is r over base, nil when base has no figures.
func ratio(r, base Summary) *Ratio {
	if base.EventsPerSec.Median <= 0 || base.CPUSecPer100k.Median <= 0 {
		return nil
	}
	return &Ratio{
		EventsPerSec: r.EventsPerSec.Median / base.EventsPerSec.Median,
		CPUPerEvent:  r.CPUSecPer100k.Median / base.CPUSecPer100k.Median,
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as an aligned text table: medians over the
// measured rounds, with the worst round's throughput next to it.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "auditpipe bench  %s  %s/%s %d CPUs %s\n", r.Started.UTC().Format(time.RFC3339), r.Host.GOOS, r.Host.GOARCH, r.Host.CPUs, r.Host.GoVersion)
	fmt.Fprintf(w, "%d events/round (mix %s; mean bytes Metadata %d, Request %d, RequestResponse %d), %d warm-up + %d rounds, batch %d, %d clients, %d partitions\n",
		r.Options.Events, r.Options.Mix, r.EventBytes[LevelMetadata], r.EventBytes[LevelRequest], r.EventBytes[LevelRequestResponse],
		r.Options.Warmup, r.Options.Rounds, r.Options.BatchSize, r.Options.Concurrency, r.Options.Partitions)
	fmt.Fprintln(w, "figures are medians over rounds; 'min' is the slowest round; CPU and RSS include the in-process broker on 'embedded'")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "broker\tstage\tvariant\tevents/s\tmin ev/s\tMB/s\tCPU s/100k\tp50 ms\tp99 ms\tpeak RSS MB\tev/s vs base\tCPU vs base\tev/s vs franz\tCPU vs franz\t")
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\t\t\n", res.Broker, res.Stage, res.Variant, res.Error)
			continue
		}
		s := res.Summary
		baseEPS, baseCPU := res.VsBaseline.cells()
		franzEPS, franzCPU := res.VsFranz.cells()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%.0f\t%.1f\t%.2f\t%.1f\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t\n",
			res.Broker, res.Stage, res.Variant, s.EventsPerSec.Median, s.EventsPerSec.Min, s.MBPerSec.Median,
			s.CPUSecPer100k.Median, s.P50Ms.Median, s.P99Ms.Median, float64(res.PeakRSSBytes)/(1<<20), baseEPS, baseCPU, franzEPS, franzCPU)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "latency measured per unit:")
	seen := map[string]bool{}
	for _, res := range r.Results {
		k := res.Stage + "/" + res.Variant
		if seen[k] {
			continue
		}
		seen[k] = true
		scope := res.RSSScope
		fmt.Fprintf(w, "  %-22s %s; RSS: %s\n", k, res.LatencyOf, scope)
	}
	for _, n := range r.NotMeasured {
		fmt.Fprintf(w, "not measured: %s\n", n)
	}
	_, err := fmt.Fprintf(w, "took %.0fs\n", r.Seconds)
	return err
}

// cells formats a ratio for the table, "-" when there is none.
func (r *Ratio) cells() (eventsPerSec, cpuPerEvent string) {
	if r == nil {
		return "-", "-"
	}
	return fmt.Sprintf("%.2fx", r.EventsPerSec), fmt.Sprintf("%.2fx", r.CPUPerEvent)
}

// maxRSSBytes converts ru_maxrss, which Linux reports in KiB and macOS in
// bytes.
func maxRSSBytes(ru *syscall.Rusage) int64 {
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) * 1024
}
