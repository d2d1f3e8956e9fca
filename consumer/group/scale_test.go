package group_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// TestScaleOutAndIn runs 1 -> 3 -> 2 replicas while events flow: the local
// store holds every event exactly once, CLS every event at least once, and
// CLS's duplicates are redeliveries of real events (same cluster, auditID,
// stage). AUDITPIPE_LONG=1 runs the 100,000 events.
func TestScaleOutAndIn(t *testing.T) {
	total, size := 2000, 900
	if long() {
		total, size = 100000, 1400
	}
	clusters := []string{"c00", "c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09", "c10", "c11"}
	e := newEnv(t, clusters)
	p := e.producer()

	start := time.Now()
	var wg sync.WaitGroup
	produceDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(produceDone)
		// In slices, so that the replicas change while records flow.
		slice := total / 10
		for i := 0; i < total; i += slice {
			e.produce(p, clusters, i, min(slice, total-i), size)
			time.Sleep(50 * time.Millisecond)
		}
	}()

	r1 := e.start("r1")
	waitProgress(t, e, total/10)
	r2 := e.start("r2")
	r3 := e.start("r3")
	waitProgress(t, e, total/2)
	r3.stop() // scale in to two while events still arrive
	<-produceDone
	wg.Wait()
	e.waitDrained(time.Duration(total/100+60) * time.Second)
	elapsed := time.Since(start)
	r1.stop()
	r2.stop()

	e.checkStore()
	dups := e.checkCLS(clusters...)
	t.Logf("%d events of %d bytes, 1->3->2 replicas: drained in %s; CLS duplicates %d (%.2f%%)",
		total, size, elapsed.Round(time.Millisecond), dups, 100*float64(dups)/float64(total))
}

// waitProgress waits until at least n records are committed.
func waitProgress(t *testing.T, e *env, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var sum int64
		for _, v := range e.committed() {
			sum += v
		}
		return sum >= int64(n)
	}, 2*time.Minute, 50*time.Millisecond)
}

// TestCLSOutage: CLS answers 503 and 429 for a while (a few seconds here,
// 30s with AUDITPIPE_LONG=1). The local store keeps up with the live
// stream meanwhile: before CLS comes back it holds every event produced
// during the outage and its group has committed them. CLS's group commits
// nothing past what CLS acknowledged, so its lag grows while events keep
// arriving and drains after; nothing is lost in either, and the heap stays
// bounded.
func TestCLSOutage(t *testing.T) {
	total, outage := 3000, 3*time.Second
	if long() {
		total, outage = 30000, 30*time.Second
	}
	clusters := []string{"c00", "c01", "c02", "c03", "c04", "c05"}
	e := newEnv(t, clusters)
	p := e.producer()
	r := e.start("r1")
	e.produce(p, clusters, 0, total/3, 1400)
	e.waitDrained(time.Minute)

	// The outage: every topic alternates between 503 and 429.
	stop := make(chan struct{})
	flipped := make(chan struct{})
	go func() {
		defer close(flipped)
		faults := []clslocal.Fault{clslocal.FaultUnavailable, clslocal.FaultSpeedQuota}
		for i := 0; ; i++ {
			for _, c := range clusters {
				e.srv.FailAlways("topic-"+c, faults[i%2])
			}
			select {
			case <-stop:
				for _, c := range clusters {
					e.srv.Heal("topic-" + c)
				}
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lagBefore := e.lag()
	deadline := time.Now().Add(outage)
	var peakHeap uint64
	var maxLag int64
	var maxLagMetric float64
	produced := total / 3
	for time.Now().Before(deadline) {
		if produced < total {
			n := min(total/30, total-produced)
			e.produce(p, clusters, produced, n, 1400)
			produced += n
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapInuse)
		maxLag = max(maxLag, e.lag())
		maxLagMetric = max(maxLagMetric, r.lagMetric(t))
		time.Sleep(100 * time.Millisecond)
	}
	require.Zero(t, lagBefore)
	require.Greater(t, maxLag, int64(0), "lag grew during the outage")
	// Still in the outage: the local store is not held back by CLS.
	require.Eventually(t, func() bool { return e.lagBy("local") == 0 }, 30*time.Second, 50*time.Millisecond,
		"the local store's group drains while CLS is down")
	e.checkStore()
	require.Positive(t, e.lagBy("cls"), "CLS is still behind: the outage is not over yet")
	require.Greater(t, maxLagMetric, 0.0, "the lag metric showed it")
	rejected := e.srv.Stats().Rejected
	require.Greater(t, rejected, int64(0))
	close(stop)
	<-flipped
	if produced < total {
		e.produce(p, clusters, produced, total-produced, 1400)
	}
	e.waitDrained(2 * time.Minute)
	require.Eventually(t, func() bool { return r.lagMetric(t) == 0 }, 10*time.Second, 50*time.Millisecond, "the lag metric drains to 0")
	e.checkStore()
	dups := e.checkCLS(clusters...)
	// Bounded: a partition holds at most its in-flight batch and its
	// paused claim queue; the heap does not grow with the outage's length.
	require.Less(t, peakHeap-min(peakHeap, before.HeapInuse), uint64(256<<20), "heap growth during the outage")
	t.Logf("outage %s: max lag %d records (metric %.0f), %d requests refused, heap in use %d MiB before, peak %d MiB; CLS duplicates %d",
		outage, maxLag, maxLagMetric, rejected, before.HeapInuse>>20, peakHeap>>20, dups)
}

// TestMissingCLSTopic: one cluster's CLS topic does not exist. That
// cluster's partition stops with a clear error (and is not committed), the
// other clusters keep flowing; creating the topic resumes it.
func TestMissingCLSTopic(t *testing.T) {
	// Clusters chosen so that "gone" has a partition to itself.
	gone := "gone"
	gp := kafkatest.ReferencePartition([]byte(gone), partitions)
	var clusters []string
	for _, c := range []string{"c00", "c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09", "c10", "c11"} {
		if kafkatest.ReferencePartition([]byte(c), partitions) != gp {
			clusters = append(clusters, c)
		}
	}
	require.NotEmpty(t, clusters)
	e := newEnv(t, clusters, gone)
	p := e.producer()
	r := e.start("r1")
	all := append(append([]string{}, clusters...), gone)
	e.produce(p, all, 0, 1200, 1000)

	require.Eventually(t, func() bool { return r.sink.Blocked()[gone] == "TopicNotExist" }, time.Minute, 50*time.Millisecond)
	// The local store has every record, the blocked cluster's included:
	// CLS holds back only its own group.
	require.Eventually(t, func() bool { return e.lagBy("local") == 0 }, time.Minute, 50*time.Millisecond)
	e.checkStore()
	// Every other cluster drains completely in CLS.
	require.Eventually(t, func() bool {
		c := e.committed()
		e.mu.Lock()
		defer e.mu.Unlock()
		for part, n := range e.perPart {
			if part != gp && c[part] != n {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond)
	e.checkCLS(clusters...)
	// The blocked partition commits nothing CLS did not take.
	time.Sleep(time.Second)
	e.mu.Lock()
	goneTotal := e.perPart[gp]
	e.mu.Unlock()
	require.Less(t, e.committed()[gp], goneTotal)
	e.mu.Lock()
	for k := range e.received {
		require.NotEqual(t, gone, k.cluster)
	}
	e.mu.Unlock()

	// The operator creates the topic: delivery resumes without a restart.
	e.srv.AddTopic("topic-" + gone)
	e.waitDrained(time.Minute)
	e.checkCLS(all...)
	e.checkStore()
	require.Empty(t, r.sink.Blocked())
}
