package webhook

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// budget bounds the decoded body bytes held by all requests at once. A
// gzip body of 64 KB on the wire can decode to the 64 MiB body limit, so
// the per-request limit alone lets a handful of clients take gigabytes.
// Requests reserve as their buffer grows and give everything back when
// they end; a request that cannot reserve fails at once (503) instead of
// waiting, so a full budget never holds connections.
type budget struct {
	limit int64
	used  atomic.Int64
	// peak is the highest value used reached: tests assert on it, and it
	// is the budget's own accounting rather than a wall-clock sample.
	peak atomic.Int64
	// onChange reports used to the metrics.
	onChange func(used int64)
}

func newBudget(limit int64, onChange func(int64)) *budget {
	if onChange == nil {
		onChange = func(int64) {}
	}
	return &budget{limit: limit, onChange: onChange}
}

// reserve takes n bytes if they fit under the limit.
func (b *budget) reserve(n int64) bool {
	for {
		cur := b.used.Load()
		if cur+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			for p := b.peak.Load(); cur+n > p && !b.peak.CompareAndSwap(p, cur+n); p = b.peak.Load() {
			}
			b.onChange(cur + n)
			return true
		}
	}
}

// release gives back n bytes.
func (b *budget) release(n int64) {
	if n > 0 {
		b.onChange(b.used.Add(-n))
	}
}

// errBudget means the memory budget had no room for the body.
var errBudget = errors.New("the receiver's memory budget for request bodies is exhausted")

// readAllBudgeted reads r to the end into one buffer, reserving each
// growth of the buffer from b first; at most max+1 bytes are read so the
// caller can tell a body over the limit. sizeHint (the Content-Length of
// an unencoded body) sizes the buffer in one step. The returned function
// releases the reservation; call it once the body is no longer used.
func readAllBudgeted(r io.Reader, b *budget, max, sizeHint int64) ([]byte, func(), error) {
	var held int64
	release := func() { b.release(held); held = 0 }
	grow := func(buf []byte, want int64) ([]byte, error) {
		want = min(want, max+1)
		if !b.reserve(want - int64(cap(buf))) {
			return buf, errBudget
		}
		held += want - int64(cap(buf))
		nb := make([]byte, len(buf), want)
		copy(nb, buf)
		return nb, nil
	}
	start := int64(32 << 10)
	if sizeHint > 0 {
		start = sizeHint + 1 // +1 so that reading to EOF needs no growth
	}
	buf, err := grow(nil, start)
	if err != nil {
		return nil, release, err
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > max {
				return buf, release, nil // over the limit: the caller answers 413
			}
			if buf, err = grow(buf, 2*int64(cap(buf))); err != nil {
				return nil, release, err
			}
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, release, nil
		}
		if err != nil {
			return nil, release, err
		}
	}
}

// clusterLimiter caps the requests of one cluster in progress at once, so
// that the slow connections of one cluster cannot take every slot of the
// receiver. The cluster is the authenticated one: the authenticator runs
// before the receiver and refuses a credential used for another cluster's
// path.
type clusterLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newClusterLimiter(max int) *clusterLimiter {
	return &clusterLimiter{max: max, n: map[string]int{}}
}

// acquire takes a slot for cluster if one is free.
func (l *clusterLimiter) acquire(cluster string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[cluster] >= l.max {
		return false
	}
	l.n[cluster]++
	return true
}

// release frees a slot; the entry goes when the cluster has none, so the
// map holds only clusters with requests in progress.
func (l *clusterLimiter) release(cluster string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[cluster]--; l.n[cluster] <= 0 {
		delete(l.n, cluster)
	}
}
