// Package cpubench measures the process's CPU time around a benchmark, so
// that benchmarks can report throughput per CPU-second ("per core") next to
// throughput per wall-second: on a shared machine the first is the figure
// that transfers.
package cpubench

import (
	"syscall"
	"testing"
	"time"
)

// Start returns a function that reports events/s and events/cpu-s for n
// events handled since Start. CPU time is the whole process's (user +
// system), so it includes any in-process server the benchmark talks to.
func Start(b *testing.B) func(n int) {
	b.Helper()
	cpu0, wall0 := cpuTime(b), time.Now()
	return func(n int) {
		cpu, wall := cpuTime(b)-cpu0, time.Since(wall0)
		b.ReportMetric(float64(n)/wall.Seconds(), "events/s")
		if cpu > 0 {
			b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
		}
	}
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
