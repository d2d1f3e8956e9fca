package webhook

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/audittest"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkago"
	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest"
)

// holdGate is a Producer that holds every call until released and counts
// the calls held at once: each is a request whose body has been read and
// is still in memory.
type holdGate struct {
	kafka.Producer
	release chan struct{}
	held    atomic.Int64
	maxHeld atomic.Int64
}

func (g *holdGate) Produce(ctx context.Context, r ...kafka.Record) error {
	n := g.held.Add(1)
	for m := g.maxHeld.Load(); n > m && !g.maxHeld.CompareAndSwap(m, n); m = g.maxHeld.Load() {
	}
	<-g.release
	g.held.Add(-1)
	return g.Producer.Produce(ctx, r...)
}

func gzipBytes(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// TestGzipBombsStayWithinTheMemoryBudget sends many gzip bodies at once
// that are a few KB on the wire and MiBs decoded, and holds every request
// that got its body read inside Kafka. The decoded bytes held together
// never exceed the budget, measured twice: by the budget's own high-water
// mark and independently by the number of requests held at once times
// each body's decoded size. The requests the budget has no room for get
// 503 with Retry-After; afterwards the budget is empty again and an
// upper-case Content-Encoding: GZIP body is accepted.
func TestGzipBombsStayWithinTheMemoryBudget(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	g := &holdGate{Producer: prod, release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(g.release)
		}
	}()

	const decoded = 600 << 10
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 768 << 10
	cfg.MaxInflightBytes = 2 << 20
	// Requests wait in the gate for as long as the test needs; the
	// publish timeout must not end them meanwhile.
	cfg.PublishTimeout = 10 * time.Minute
	cfg.MaxConcurrent, cfg.MaxConcurrentPerCluster = 0, 0 // the budget alone limits
	cfg.Topics = uniqueTopics(t)
	ensureTopics(t, brokers, cfg.Topics)
	reg := prometheus.NewRegistry()
	rc, err := New(cfg, g, mustMetrics(t, reg), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	rc.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	head := `{"items":[{"kind":"Event","auditID":"bomb","stage":"ResponseComplete","requestObject":{"pad":"`
	tail := `"}}]}`
	body := gzipBytes(t, []byte(head+strings.Repeat("x", decoded-len(head)-len(tail))+tail))
	require.Less(t, len(body), 16<<10, "a bomb is small on the wire")
	const n = 24
	type result struct {
		code       int
		retryAfter string
	}
	results := make(chan result, n)
	for i := range n {
		enc := "gzip"
		if i%2 == 1 {
			enc = "GZIP"
		}
		go func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+PathPrefix+"c1", bytes.NewReader(body))
			req.Header.Set("Content-Encoding", enc)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- result{}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{resp.StatusCode, resp.Header.Get("Retry-After")}
		}()
	}
	// Every request either answered or is held in Produce with its body.
	var got []result
	require.Eventually(t, func() bool {
		for {
			select {
			case r := <-results:
				got = append(got, r)
			default:
				return int64(len(got))+g.held.Load() == n
			}
		}
	}, time.Minute, 10*time.Millisecond)
	maxHeld := g.maxHeld.Load()
	require.LessOrEqual(t, maxHeld*decoded, cfg.MaxInflightBytes, "requests holding a decoded body at once")
	require.LessOrEqual(t, rc.budget.peak.Load(), cfg.MaxInflightBytes, "budget high-water mark")
	require.Positive(t, rc.budget.peak.Load())
	for _, r := range got {
		require.Equal(t, http.StatusServiceUnavailable, r.code, "a request that was answered before the release")
		require.Equal(t, "1", r.retryAfter)
	}
	require.NotEmpty(t, got, "some requests must have been refused")
	require.Equal(t, float64(len(got)), testutil.ToFloat64(rc.metrics.rejected.WithLabelValues("memory_budget")))

	close(g.release)
	released = true
	for int64(len(got)) < n {
		r := <-results
		require.Equal(t, http.StatusOK, r.code, "a held request finishes")
		got = append(got, r)
	}
	require.Zero(t, rc.budget.used.Load(), "every reservation is given back")
	require.Zero(t, testutil.ToFloat64(rc.metrics.inflight))

	small := gzipBytes(t, []byte(`{"items":[{"auditID":"upper","stage":"ResponseComplete"}]}`))
	code, msg := post(t, srv.URL+PathPrefix+"c1", small, http.Header{"Content-Encoding": {"GZIP"}})
	require.Equal(t, http.StatusOK, code, msg)
	code, msg = post(t, srv.URL+PathPrefix+"c1", small, http.Header{"Content-Encoding": {"br"}})
	require.Equal(t, http.StatusUnsupportedMediaType, code, msg)
}

// TestReadAllBudgeted checks the reader on its own: exact sizes, the
// limit, and that a refused growth leaves nothing reserved.
func TestReadAllBudgeted(t *testing.T) {
	b := newBudget(1<<20, nil)
	data := bytes.Repeat([]byte("a"), 100_000)
	body, release, err := readAllBudgeted(bytes.NewReader(data), b, 200_000, 0)
	require.NoError(t, err)
	require.Equal(t, data, body)
	require.GreaterOrEqual(t, b.used.Load(), int64(len(data)))
	release()
	require.Zero(t, b.used.Load())

	body, release, err = readAllBudgeted(bytes.NewReader(data), b, 50_000, int64(len(data)))
	require.NoError(t, err)
	require.Len(t, body, 50_001, "one byte over the limit tells the caller")
	release()

	small := newBudget(64<<10, nil)
	_, release, err = readAllBudgeted(bytes.NewReader(data), small, 200_000, 0)
	require.ErrorIs(t, err, errBudget)
	release()
	require.Zero(t, small.used.Load())
}

// statusByCluster records the status of every answer per path cluster. It
// unwraps to the server's writer so http.ResponseController still reaches
// the connection.
type statusByCluster struct {
	next http.Handler
	mu   sync.Mutex
	seen map[string]map[int]int
}

type recordingWriter struct {
	http.ResponseWriter
	status int
}

func (w *recordingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *statusByCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &recordingWriter{ResponseWriter: w, status: http.StatusOK}
	s.next.ServeHTTP(rw, r)
	cluster := strings.TrimPrefix(r.URL.Path, PathPrefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[cluster] == nil {
		s.seen[cluster] = map[int]int{}
	}
	s.seen[cluster][rw.status]++
}

func (s *statusByCluster) statuses(cluster string) map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int{}
	for k, v := range s.seen[cluster] {
		out[k] = v
	}
	return out
}

// slowUpload opens a connection, sends the headers of a POST for cluster
// and then its body one byte every 50ms, until the server answers or
// closes. It returns the status (0 when the connection was closed without
// an answer) and how long the connection lasted.
func slowUpload(addr, cluster string) (int, time.Duration) {
	start := time.Now()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return -1, 0
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n", PathPrefix, cluster)
	answered := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case code := <-answered:
			return code, time.Since(start)
		case <-tick.C:
			if _, err := conn.Write([]byte("{")); err != nil {
				return <-answered, time.Since(start)
			}
		}
	}
}

// TestOneClusterCannotStarveAnother keeps many slow uploads of cluster A
// open (bodies trickling in a byte at a time) while cluster B's apiserver,
// kube-apiserver's own webhook backend, sends its batches. B gets 200 for
// every request it makes; A's uploads beyond its per-cluster cap are
// refused at once, and the admitted ones are cut off by the body read
// deadline with 408.
func TestOneClusterCannotStarveAnother(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	cfg := DefaultConfig()
	cfg.MaxConcurrent = 8
	cfg.MaxConcurrentPerCluster = 4
	cfg.BodyReadTimeout = time.Second
	cfg.Topics = uniqueTopics(t)
	ensureTopics(t, brokers, cfg.Topics)
	prod, err := kafkago.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = prod.Close() })
	rc, err := New(cfg, prod, mustMetrics(t, prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	mux := http.NewServeMux()
	rc.Routes(mux)
	rec := &statusByCluster{next: mux, seen: map[string]map[int]int{}}
	srv := httptest.NewUnstartedServer(rec)
	srv.Config.ReadHeaderTimeout = 2 * time.Second
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	// Cluster A: 20 slow uploaders, each reconnecting when cut off, for
	// as long as B is sending.
	stop := make(chan struct{})
	type upload struct {
		code int
		took time.Duration
	}
	var mu sync.Mutex
	var uploads []upload
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, took := slowUpload(addr, "cluster-a")
				mu.Lock()
				uploads = append(uploads, upload{code, took})
				mu.Unlock()
			}
		}()
	}
	// Let A take every slot it can get before B starts.
	require.Eventually(t, func() bool { return rec.statuses("cluster-a")[http.StatusServiceUnavailable] > 0 }, 10*time.Second, 10*time.Millisecond)

	evs := audittest.Events(audittest.Load(t, audittest.Dir(t)))[:60]
	backend := audittest.WebhookBackend(t, srv.URL+PathPrefix+"cluster-b", audittest.ModeBlocking)
	deadline := time.Now().Add(3 * cfg.BodyReadTimeout) // B keeps sending while A's uploads are cut and reconnect
	for i := 0; time.Now().Before(deadline) || i < 6; i++ {
		j := (i * 10) % len(evs)
		require.True(t, backend.ProcessEvents(evs[j:j+10]...), "batch %d of cluster B", i)
	}
	close(stop)
	wg.Wait()

	b := rec.statuses("cluster-b")
	require.Equal(t, map[int]int{http.StatusOK: b[http.StatusOK]}, b, "cluster B got 200 for every request")
	require.GreaterOrEqual(t, b[http.StatusOK], 6)

	a := rec.statuses("cluster-a")
	require.Positive(t, a[http.StatusServiceUnavailable], "A's uploads beyond its cap are refused")
	require.Positive(t, a[http.StatusRequestTimeout], "A's admitted uploads are cut by the body deadline")
	require.Zero(t, a[http.StatusOK])
	require.Equal(t, float64(a[http.StatusRequestTimeout]), testutil.ToFloat64(rc.metrics.rejected.WithLabelValues("body_timeout")))
	for _, u := range uploads {
		// 100000 bytes at 20 per second would take over an hour: every
		// upload ended because the server ended it.
		require.Less(t, u.took, 10*cfg.BodyReadTimeout, "upload answered %d", u.code)
		require.Contains(t, []int{0, http.StatusServiceUnavailable, http.StatusRequestTimeout}, u.code)
	}
}

// TestBudgetOfOneBodyAcceptsTheLargestBody checks the smallest budget
// Validate allows: a body of exactly maxBodyBytes fits, one byte more is
// 413, not 503.
func TestBudgetOfOneBodyAcceptsTheLargestBody(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 64 << 10
	cfg.MaxInflightBytes = cfg.MaxBodyBytes
	require.ErrorContains(t, cfg.Validate(), "maxInflightBytes")
	cfg.MaxInflightBytes = cfg.MaxBodyBytes + 1
	h := newHarness(t, kafkatest.Brokers(t), cfg)
	item := `{"auditID":"max","stage":"ResponseComplete","pad":"`
	pad := int(cfg.MaxBodyBytes) - len(`{"items":[`) - len(item) - len(`"}]}`)
	body := `{"items":[` + item + strings.Repeat("p", pad) + `"}]}`
	require.Len(t, body, int(cfg.MaxBodyBytes))
	code, msg := post(t, h.srv.URL+PathPrefix+"c1", gzipBytes(t, []byte(body)), http.Header{"Content-Encoding": {"gzip"}})
	require.Equal(t, http.StatusOK, code, msg)
	code, msg = post(t, h.srv.URL+PathPrefix+"c1", gzipBytes(t, []byte(body+" ")), http.Header{"Content-Encoding": {"gzip"}})
	require.Equal(t, http.StatusRequestEntityTooLarge, code, msg)
	code, msg = post(t, h.srv.URL+PathPrefix+"c1", []byte(body), nil)
	require.Equal(t, http.StatusOK, code, msg)
}
