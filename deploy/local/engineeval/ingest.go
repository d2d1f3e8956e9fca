package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// ingestResult is one engine's measured run.
type ingestResult struct {
	engine      string
	run         int
	events      int
	wall        time.Duration
	cpu         time.Duration // process user+sys, writes + close
	closeCPU    time.Duration // the close's share (final flush, merges, checkpoint)
	diskBytes   int64
	inputBytes  int64
	maxRSSBytes int64
}

func (r ingestResult) cpuPer100k() float64 {
	return r.cpu.Seconds() * 100_000 / float64(r.events)
}

// cpuTime is the process's user+system CPU time so far: every goroutine's,
// the storage engines' background workers included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(fmt.Sprintf("getrusage: %v", err)) // cannot fail with RUSAGE_SELF
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func maxRSS() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024
}

// ingest writes events [0, n) of c into a new engine in dir, in batches,
// and measures the process CPU from the first batch to the end of close.
func ingest(ctx context.Context, c *corpus, name, dir, vlSync string, n, batch, run int) (ingestResult, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return ingestResult{}, err
	}
	e, err := openEngine(name, dir, vlSync)
	if err != nil {
		return ingestResult{}, fmt.Errorf("open %s: %w", name, err)
	}
	runtime.GC()
	res := ingestResult{engine: name, run: run, events: n}
	var buf []byte
	var values [][]byte
	cpu0, wall0 := cpuTime(), time.Now()
	for from := 0; from < n; from += batch {
		values, buf = c.batch(buf, from, min(batch, n-from))
		for _, v := range values {
			res.inputBytes += int64(len(v))
		}
		if err := e.write(ctx, values); err != nil {
			_ = e.close()
			return res, fmt.Errorf("%s: write batch at %d: %w", name, from, err)
		}
	}
	closeCPU0 := cpuTime()
	if err := e.close(); err != nil {
		return res, fmt.Errorf("%s: close: %w", name, err)
	}
	res.cpu, res.wall = cpuTime()-cpu0, time.Since(wall0)
	res.closeCPU = cpuTime() - closeCPU0
	res.maxRSSBytes = maxRSS()
	res.diskBytes, err = diskUsage(dir)
	return res, err
}

// diskUsage is the space the files under dir take (allocated blocks, so
// sparse or preallocated files count as the file system counts them).
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// printIngest prints every run and, per engine, the min and median of
// CPU-s per 100k and their difference from the null engine's median.
func printIngest(w io.Writer, results []ingestResult) {
	fmt.Fprintf(w, "%-11s %3s %9s %8s %8s %10s %9s %10s %9s %8s\n",
		"engine", "run", "events", "wall-s", "cpu-s", "cpu-s/100k", "close-cpu", "disk-MB", "disk-B/ev", "in-B/ev")
	byEngine := map[string][]ingestResult{}
	var order []string
	for _, r := range results {
		fmt.Fprintf(w, "%-11s %3d %9d %8.2f %8.2f %10.2f %9.2f %10.1f %9.0f %8.0f\n",
			r.engine, r.run, r.events, r.wall.Seconds(), r.cpu.Seconds(), r.cpuPer100k(), r.closeCPU.Seconds(),
			float64(r.diskBytes)/1e6, float64(r.diskBytes)/float64(r.events), float64(r.inputBytes)/float64(r.events))
		if _, ok := byEngine[r.engine]; !ok {
			order = append(order, r.engine)
		}
		byEngine[r.engine] = append(byEngine[r.engine], r)
	}
	med := func(rs []ingestResult) (float64, float64) {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = r.cpuPer100k()
		}
		slices.Sort(v)
		return v[0], v[len(v)/2]
	}
	var null float64
	if rs, ok := byEngine[engineNull]; ok {
		_, null = med(rs)
	}
	fmt.Fprintf(w, "\n%-11s %16s %22s %14s\n", "engine", "cpu-s/100k min", "median (minus null)", "ev per cpu-s")
	for _, name := range order {
		lo, m := med(byEngine[name])
		fmt.Fprintf(w, "%-11s %16.2f %10.2f (%8.2f) %14.0f\n", name, lo, m, m-null, 100_000/m)
	}
}
