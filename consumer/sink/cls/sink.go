package cls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clssdk "github.com/tencentcloud/tencentcloud-cls-sdk-go"
	"google.golang.org/protobuf/proto"

	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// Config configures the sink.
type Config struct {
	// Endpoint is the CLS upload host, e.g. ap-guangzhou.cls.tencentcs.com,
	// or http://127.0.0.1:port for the local server.
	Endpoint  string `json:"endpoint"`
	SecretID  string `json:"secretID"`
	SecretKey string `json:"secretKey"`
	// Token is the STS token when SecretID/SecretKey are temporary.
	Token string `json:"token"`
	// Compression is lz4 (default), zstd or deflate.
	Compression string `json:"compression"`
	// Linger is how long the SDK waits to fill a LogGroup. The SDK forces
	// at least 100ms. Default 100ms.
	Linger time.Duration `json:"linger"`
	// ChunkLogs and ChunkBytes cap one SendLogList call. The SDK counts a
	// list as one log against its batch count, so a LogGroup can hold up
	// to 4095+ChunkLogs logs: ChunkLogs must stay under 10000-4096.
	// Defaults 2048 logs and 1 MiB.
	ChunkLogs  int `json:"chunkLogs"`
	ChunkBytes int `json:"chunkBytes"`
	// RetryBase and RetryMax bound the backoff of transient failures.
	// Defaults 200ms and 30s.
	RetryBase time.Duration `json:"retryBase"`
	RetryMax  time.Duration `json:"retryMax"`
	// BlockedRetry is how often a blocked cluster (401/403/404) is tried
	// again. Default 30s.
	BlockedRetry time.Duration `json:"blockedRetry"`
	// BufferBytes caps what the SDK holds in memory. Default 64 MiB.
	BufferBytes int64 `json:"bufferBytes"`
	// Timeout is the HTTP timeout of one request. Default 10s.
	Timeout time.Duration `json:"timeout"`
	// RecentIdentities is how many event identities (cluster, auditID,
	// stage) the sink remembers with the content hashes CLS acknowledged,
	// to skip redeliveries and mark a reused auditID (identity.go,
	// decision 0012). Up to twice as many are held (two generations, about
	// 200 bytes each). Default 50000; negative turns the memory off (every
	// record is sent, nothing is marked).
	RecentIdentities int `json:"recentIdentities"`
	// DefaultTopicID receives the events of clusters the fleet registry
	// gives no topic. Empty: such events are not sent to CLS (counted as
	// unrouted and logged once per cluster; they are in the local store).
	DefaultTopicID string `json:"defaultTopicID"`
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Compression == "" {
		c.Compression = "lz4"
	}
	if c.Linger <= 0 {
		c.Linger = 100 * time.Millisecond
	}
	if c.ChunkLogs <= 0 {
		c.ChunkLogs = 2048
	}
	if c.ChunkBytes <= 0 {
		c.ChunkBytes = 1 << 20
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 200 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.BlockedRetry <= 0 {
		c.BlockedRetry = 30 * time.Second
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = 64 << 20
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RecentIdentities == 0 {
		c.RecentIdentities = 50_000
	}
	return c
}

// Validate reports a config the sink cannot work with, naming the field.
func (c Config) Validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("cls.endpoint: required")
	case c.SecretID == "" || c.SecretKey == "":
		return errors.New("cls.secretID, cls.secretKey: both required")
	case c.Compression != "lz4" && c.Compression != "zstd" && c.Compression != "deflate":
		return fmt.Errorf("cls.compression: %q, want lz4, zstd or deflate", c.Compression)
	case c.Linger < 100*time.Millisecond:
		return fmt.Errorf("cls.linger: %s, the SDK needs at least 100ms", c.Linger)
	case c.ChunkLogs > maxGroupLogs-4096:
		return fmt.Errorf("cls.chunkLogs: %d, at most %d (the SDK may add a whole list to a LogGroup of 4095 logs)", c.ChunkLogs, maxGroupLogs-4096)
	case c.ChunkBytes > 2<<20:
		return fmt.Errorf("cls.chunkBytes: %d, at most %d (a LogGroup holds at most 5 MB)", c.ChunkBytes, 2<<20)
	case c.RetryMax < c.RetryBase:
		return fmt.Errorf("cls.retryMax: %s is below retryBase %s", c.RetryMax, c.RetryBase)
	}
	return nil
}

// Topics maps a cluster id to its CLS topic id.
type Topics func(cluster string) (topicID string, ok bool)

// FleetTopics routes by the fleet registry's clusters.<id>.cls.topicID.
func FleetTopics(reg *fleet.Registry) Topics {
	return func(cluster string) (string, bool) {
		c, ok := reg.Cluster(cluster)
		if !ok || c.CLS.TopicID == "" {
			return "", false
		}
		return c.CLS.TopicID, true
	}
}

// Sink is the CLS sink. Safe for concurrent Write calls (one per
// partition).
type Sink struct {
	cfg      Config
	topics   Topics
	producer *clssdk.AsyncProducerClient
	metrics  *metrics
	logger   *slog.Logger
	recent   *recent

	mu       sync.Mutex
	unrouted map[string]bool // clusters already logged as unrouted
	blocked  map[string]string
	// failing is the latest send failure when no send succeeded since.
	failing   atomic.Pointer[error]
	closeOnce sync.Once
	closeErr  error
}

// New creates the sink and starts the SDK's producer.
func New(cfg Config, topics Topics, reg prometheus.Registerer, logger *slog.Logger) (*Sink, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if topics == nil {
		return nil, errors.New("cls sink: no topic routing")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("cls sink: %w", err)
	}
	pc := clssdk.GetDefaultAsyncProducerClientConfig()
	pc.Endpoint = cfg.Endpoint
	pc.AccessKeyID, pc.AccessKeySecret, pc.AccessToken = cfg.SecretID, cfg.SecretKey, cfg.Token
	pc.CompressType = cfg.Compression
	pc.LingerMs = cfg.Linger.Milliseconds()
	pc.MaxBatchCount = 4096
	pc.MaxBatchSize = int64(cfg.ChunkBytes)
	pc.TotalSizeLnBytes = cfg.BufferBytes
	pc.Timeout = int(cfg.Timeout.Milliseconds())
	// Retries are ours (jittered, classified, ctx-aware): the SDK's retry
	// 403 LogSizeExceed and pace by the linger timer. One SDK retry stays
	// because v1.0.17 records the error code of a failed attempt only when
	// it schedules a retry; with Retries=0 a 429, 5xx or 403 reaches Fail
	// with no code at all and could not be classified.
	pc.Retries = 1
	pc.BaseRetryBackoffMs = cfg.RetryBase.Milliseconds()
	// Never block inside SendLogList longer than a request: the partition's
	// backoff loop is the place to wait.
	pc.MaxBlockSec = 0
	p, err := clssdk.NewAsyncProducerClient(pc)
	if err != nil {
		m.unregister()
		return nil, fmt.Errorf("cls sink: producer for %s: %w", cfg.Endpoint, err)
	}
	p.Start()
	return &Sink{
		cfg: cfg, topics: topics, producer: p, metrics: m, logger: logger, recent: newRecent(cfg.RecentIdentities),
		unrouted: map[string]bool{}, blocked: map[string]string{},
	}, nil
}

// Name implements group.Sink.
func (s *Sink) Name() string { return "cls" }

// chunk is one SendLogList call and everything needed to retry it.
type chunk struct {
	topic    string
	clusters []string // distinct clusters in the chunk, for blocking
	logs     []*clssdk.Log
	bytes    int
}

// Write implements group.Sink: it returns nil only when CLS acknowledged
// every routable record, or ctx's error when the partition was revoked or
// the consumer stops (nothing is then committed).
func (s *Sink) Write(ctx context.Context, records []kafka.Record) error {
	batch := &batchIdentities{recent: s.recent, sent: map[identity][]string{}}
	chunks := s.prepare(records, batch)
	attempt := map[*chunk]int{}
	for len(chunks) > 0 {
		failed, err := s.sendAll(ctx, chunks)
		if err != nil {
			return err
		}
		if len(failed) == 0 {
			break
		}
		// Wait once for the whole set: the longest wait any failed chunk
		// asks for, so a partition never hammers CLS.
		var wait time.Duration
		chunks = chunks[:0]
		for _, f := range failed {
			attempt[f.chunk]++
			wait = max(wait, s.backoff(f, attempt[f.chunk]))
			chunks = append(chunks, f.chunk)
		}
		s.metrics.retryWait.Observe(wait.Seconds())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("cls sink: %d chunks not acknowledged: %w", len(chunks), ctx.Err())
		case <-t.C:
		}
	}
	batch.acknowledged()
	return nil
}

func (s *Sink) backoff(f failure, attempt int) time.Duration {
	if f.permanent {
		return s.cfg.BlockedRetry
	}
	d := s.cfg.RetryBase << min(attempt-1, 20)
	d = min(d, s.cfg.RetryMax)
	// Full jitter over the upper half: replicas that failed together do
	// not retry together.
	return d/2 + rand.N(d/2+1)
}

// prepare flattens the records and cuts them into chunks per topic. Records
// batch already knows are left out; a reused auditID is marked.
func (s *Sink) prepare(records []kafka.Record, batch *batchIdentities) []*chunk {
	open := map[string]*chunk{}
	var chunks []*chunk
	for _, r := range records {
		f, err := Flatten(r.Value, r.Time)
		if err != nil {
			// The local sink reports and skips the same records: they are
			// not processed events and never will be.
			s.metrics.logs.WithLabelValues(outcomeInvalid).Inc()
			s.logger.Error("cls sink: record is not a processed event; skipped",
				"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			continue
		}
		if f.Truncated > 0 {
			s.metrics.truncated.Add(float64(f.Truncated))
		}
		topic, ok := s.topics(f.Cluster)
		if !ok {
			topic = s.cfg.DefaultTopicID
		}
		if topic == "" {
			s.metrics.logs.WithLabelValues(outcomeUnrouted).Inc()
			s.warnUnrouted(f.Cluster)
			continue
		}
		duplicate, reused := batch.verdict(identity{f.Cluster, f.AuditID, f.Stage}, f.ContentHash)
		if duplicate {
			s.metrics.logs.WithLabelValues(outcomeDuplicate).Inc()
			continue
		}
		if reused {
			f.Contents = append(f.Contents, KV{reusedKey, "true"})
			f.Bytes += len(reusedKey) + len("true")
			s.metrics.reused.Inc()
			s.logger.Warn("cls sink: auditID reused: sending a different event under an auditID recently sent for this cluster and stage",
				"cluster", f.Cluster, "auditID", f.AuditID, "stage", f.Stage, "topic_id", topic)
		}
		c := open[topic]
		if c == nil || len(c.logs) >= s.cfg.ChunkLogs || (len(c.logs) > 0 && c.bytes+f.Bytes > s.cfg.ChunkBytes) {
			c = &chunk{topic: topic}
			open[topic] = c
			chunks = append(chunks, c)
		}
		if !slices.Contains(c.clusters, f.Cluster) {
			c.clusters = append(c.clusters, f.Cluster)
		}
		c.logs = append(c.logs, toLog(f))
		c.bytes += f.Bytes
	}
	return chunks
}

func toLog(f Flat) *clssdk.Log {
	l := &clssdk.Log{Time: proto.Int64(f.TimeMs), Contents: make([]*clssdk.Log_Content, len(f.Contents))}
	for i := range f.Contents {
		kv := &f.Contents[i]
		l.Contents[i] = &clssdk.Log_Content{Key: &kv.Key, Value: &kv.Value}
	}
	return l
}

func (s *Sink) warnUnrouted(cluster string) {
	s.mu.Lock()
	first := !s.unrouted[cluster]
	s.unrouted[cluster] = true
	s.mu.Unlock()
	if first {
		s.logger.Warn("cls sink: the fleet registry gives this cluster no CLS topic and there is no defaultTopicID; its events are not sent to CLS",
			"cluster", cluster)
	}
}

type failure struct {
	chunk     *chunk
	permanent bool
	code      string
	message   string
	requestID string
}

// result is one callback of the SDK.
type result struct {
	chunk *chunk
	res   *clssdk.Result
	ok    bool
}

type callback struct {
	c  *chunk
	ch chan<- result
}

func (cb callback) Success(r *clssdk.Result) { cb.ch <- result{cb.c, r, true} }
func (cb callback) Fail(r *clssdk.Result)    { cb.ch <- result{cb.c, r, false} }

// sendAll hands every chunk to the SDK and waits for every callback. It
// returns the chunks that failed, classified.
func (s *Sink) sendAll(ctx context.Context, chunks []*chunk) ([]failure, error) {
	// Buffered for every callback: the SDK's workers never block on us,
	// even when we stop waiting because ctx ended.
	ch := make(chan result, len(chunks))
	pending := 0
	var failed []failure
	for _, c := range chunks {
		if err := s.producer.SendLogList(c.topic, c.logs, callback{c, ch}); err != nil {
			// The SDK's buffer is full (memory bound) or it is closing: the
			// same as a transient failure.
			failed = append(failed, failure{chunk: c, code: "ProducerBusy", message: err.Error()})
			s.metrics.requests.WithLabelValues(outcomeRetryable).Inc()
			continue
		}
		pending++
	}
	for ; pending > 0; pending-- {
		var r result
		select {
		case r = <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("cls sink: waiting for %d acknowledgements: %w", pending, ctx.Err())
		}
		if r.ok {
			s.failing.Store(nil)
			s.metrics.requests.WithLabelValues(outcomeSuccess).Inc()
			s.metrics.logs.WithLabelValues(outcomeSent).Add(float64(len(r.chunk.logs)))
			s.unblock(r.chunk)
			continue
		}
		f := classify(r.chunk, r.res)
		failed = append(failed, f)
		if f.permanent {
			s.metrics.requests.WithLabelValues(outcomePermanent).Inc()
			s.block(f)
		} else {
			down := fmt.Errorf("cls sink: sends failing: %s %s", f.code, f.message)
			s.failing.Store(&down)
			s.metrics.requests.WithLabelValues(outcomeRetryable).Inc()
			s.logger.Warn("cls sink: send failed; retrying with backoff", "topic_id", f.chunk.topic,
				"logs", len(f.chunk.logs), "errorcode", f.code, "errormessage", f.message, "request_id", f.requestID)
		}
	}
	return failed, nil
}

// permanentCodes are CLS error codes no retry can fix; they need an
// operator (a topic created, a key rotated, a bug fixed).
var permanentCodes = map[string]bool{
	"TopicNotExist": true, "Unauthorized": true, "AuthFailure": true,
	"LogSizeExceed": true, "TopicClosed": true, "OperationDenied": true,
}

func classify(c *chunk, r *clssdk.Result) failure {
	code, msg := r.GetErrorCode(), r.GetErrorMessage()
	perm := permanentCodes[code] || strings.HasPrefix(code, "AuthFailure")
	return failure{chunk: c, permanent: perm, code: code, message: msg, requestID: r.GetRequestId()}
}

func (s *Sink) block(f failure) {
	s.mu.Lock()
	var newly []string
	for _, cl := range f.chunk.clusters {
		if _, ok := s.blocked[cl]; !ok {
			newly = append(newly, cl)
		}
		s.blocked[cl] = f.code
		s.metrics.blocked.WithLabelValues(cl).Set(1)
	}
	s.mu.Unlock()
	for _, cl := range newly {
		s.logger.Error("cls sink: CLS refuses this cluster's events; they are held (not committed) and retried every blockedRetry until it is fixed",
			"cluster", cl, "topic_id", f.chunk.topic, "errorcode", f.code, "errormessage", f.message,
			"request_id", f.requestID, "blocked_retry", s.cfg.BlockedRetry)
	}
}

func (s *Sink) unblock(c *chunk) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cl := range c.clusters {
		if _, ok := s.blocked[cl]; ok {
			delete(s.blocked, cl)
			s.metrics.blocked.WithLabelValues(cl).Set(0)
			s.logger.Info("cls sink: cluster delivers again", "cluster", cl, "topic_id", c.topic)
		}
	}
}

// Healthy returns the latest transient send failure when no send
// succeeded since (CLS is unreachable or failing), else nil: a readiness
// check. Blocked clusters (refused permanently) do not count: they need an
// operator, and the other clusters' events still flow.
func (s *Sink) Healthy(context.Context) error {
	if p := s.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// Blocked returns the clusters CLS currently refuses, with the error code.
func (s *Sink) Blocked() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.blocked))
	for k, v := range s.blocked {
		out[k] = v
	}
	return out
}

// Close stops the SDK producer. Call it after the group stopped: Write
// waits for every acknowledgement, so nothing acknowledged-pending is left
// in the SDK then, and the SDK's Close (which fails rather than retries
// what it still holds) has nothing to lose. timeout bounds the wait. Safe
// to call twice.
func (s *Sink) Close(timeout time.Duration) error {
	s.closeOnce.Do(func() {
		if err := s.producer.Close(timeout.Milliseconds()); err != nil {
			s.closeErr = fmt.Errorf("cls sink: close producer: %w", err)
		}
		s.metrics.unregister()
	})
	return s.closeErr
}
