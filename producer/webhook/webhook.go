// Package webhook receives audit events from kube-apiserver's webhook audit
// backend (--audit-webhook-config-file) and publishes one Kafka record per
// event to the raw topic.
//
// The apiserver POSTs audit.k8s.io EventList batches to the URL of its
// webhook kubeconfig (appending ?timeout=30s), retries every failure, and
// drops events when its own buffer is full. So the receiver answers 2xx
// only once every event of the batch is acknowledged by Kafka, answers
// errors quickly, and is idempotent: a retried batch produces records the
// downstream stages de-duplicate on (cluster, auditID, stage, content hash).
package webhook

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/producer/event"
	"github.com/auditpipe/auditpipe/producer/spool"
	"github.com/auditpipe/auditpipe/schemas"
)

// PathPrefix is where the receiver listens; the cluster id follows it.
const PathPrefix = "/v1/audit/"

// ValidClusterID reports whether id is an acceptable cluster id: the one
// rule, fleet.ValidClusterID (1 to 63 lower-case letters, digits, '.', '_'
// or '-', starting and ending with a letter or digit).
func ValidClusterID(id string) bool { return fleet.ValidClusterID(id) }

// Config configures the receiver.
type Config struct {
	// Topics names the raw and dead-letter topics.
	Topics schemas.Topics
	// MaxBodyBytes is the largest request body accepted (after gzip
	// decoding); larger bodies get 413 before they are read whole.
	MaxBodyBytes int64
	// PublishTimeout bounds how long one batch may wait for Kafka before
	// the receiver answers 503 and lets the apiserver retry.
	PublishTimeout time.Duration
	// MaxEventBytes is the largest event put on the raw topic. A larger
	// event loses its requestObject and responseObject and gets the
	// annotation audit.k8s.io/truncated=true, as kube-apiserver's
	// truncate backend does; if it is still too large, it goes to the
	// dead-letter topic (its first MaxEventBytes bytes) with the reason.
	// Keep it below the broker's message.max.bytes.
	MaxEventBytes int
	// MaxConcurrent caps the requests handled at once; more get 503 with
	// Retry-After at once instead of queueing (which would hold their
	// bodies in memory). Zero means no cap.
	MaxConcurrent int
	// MaxConcurrentPerCluster caps the requests of one cluster handled at
	// once, so that one cluster (or one slow client) cannot take every
	// slot; more get 503 with Retry-After. Zero means no cap.
	MaxConcurrentPerCluster int
	// MaxInflightBytes bounds the decoded body bytes held by all requests
	// together (the memory budget). A request that does not fit gets 503
	// with Retry-After, which the apiserver retries. It must be larger
	// than MaxBodyBytes (reading one byte past the limit is how a body is
	// found too large), or the largest allowed body could never be
	// accepted.
	MaxInflightBytes int64
	// BodyReadTimeout bounds reading one request body, from the moment the
	// handler starts; a client trickling its body is cut off with 408.
	// Zero leaves only the server's ReadTimeout.
	BodyReadTimeout time.Duration
}

// DefaultConfig returns the defaults: 64 MiB bodies (400 events of up to
// 45 KB at RequestResponse with room to spare) and a 20 s publish timeout,
// under the apiserver's 30 s request timeout.
//
// MaxEventBytes is 900 KiB, under Kafka's default message.max.bytes of
// 1 MiB with room for headers; MaxConcurrent is 64 requests, 16 of them
// for one cluster (a cluster's apiservers send a few batches at once);
// the memory budget is 256 MiB of decoded bodies (four bodies of the
// largest size, or some hundred of the apiserver's usual batches); a body
// must arrive within 15 s.
func DefaultConfig() Config {
	return Config{Topics: schemas.DefaultTopics(), MaxBodyBytes: 64 << 20, PublishTimeout: 20 * time.Second, MaxEventBytes: 900 << 10,
		MaxConcurrent: 64, MaxConcurrentPerCluster: 16, MaxInflightBytes: 256 << 20, BodyReadTimeout: 15 * time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := c.Topics.Validate(); err != nil {
		return err
	}
	if c.MaxBodyBytes <= 0 {
		return errors.New("webhook: maxBodyBytes must be positive")
	}
	if c.PublishTimeout <= 0 {
		return errors.New("webhook: publishTimeout must be positive")
	}
	if c.MaxEventBytes < 1024 {
		return errors.New("webhook: maxEventBytes must be at least 1024")
	}
	if c.MaxConcurrent < 0 || c.MaxConcurrentPerCluster < 0 {
		return errors.New("webhook: maxConcurrent and maxConcurrentPerCluster must not be negative")
	}
	if c.MaxInflightBytes <= c.MaxBodyBytes {
		return fmt.Errorf("webhook: maxInflightBytes (%d) must be larger than maxBodyBytes (%d), or the largest body could never be accepted", c.MaxInflightBytes, c.MaxBodyBytes)
	}
	if c.BodyReadTimeout < 0 {
		return errors.New("webhook: bodyReadTimeout must not be negative")
	}
	return nil
}

// Receiver is the http.Handler for POST /v1/audit/{cluster}.
type Receiver struct {
	cfg     Config
	pub     kafka.Producer
	metrics *Metrics
	logger  *slog.Logger
	now     func() time.Time
	slots   chan struct{}   // nil: no concurrency cap
	perClus *clusterLimiter // nil: no per-cluster cap
	budget  *budget
}

// New returns a Receiver publishing through pub.
func New(cfg Config, pub kafka.Producer, metrics *Metrics, logger *slog.Logger) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := &Receiver{cfg: cfg, pub: pub, metrics: metrics, logger: logger, now: time.Now}
	if cfg.MaxConcurrent > 0 {
		rc.slots = make(chan struct{}, cfg.MaxConcurrent)
	}
	if cfg.MaxConcurrentPerCluster > 0 {
		rc.perClus = newClusterLimiter(cfg.MaxConcurrentPerCluster)
	}
	rc.budget = newBudget(cfg.MaxInflightBytes, func(used int64) {
		if metrics != nil {
			metrics.inflight.Set(float64(used))
		}
	})
	return rc, nil
}

// Pattern is the ServeMux pattern the receiver serves; a middleware such
// as the authenticator wraps the receiver under it (it reads the {cluster}
// path value).
const Pattern = "POST " + PathPrefix + "{cluster}"

// Routes registers the receiver on mux.
func (rc *Receiver) Routes(mux *http.ServeMux) {
	mux.Handle(Pattern, rc)
}

// eventList is the envelope the apiserver sends. Items stay raw so the
// bytes the apiserver sent are what lands on the raw topic.
type eventList struct {
	Kind       string            `json:"kind"`
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
}

// response is the JSON body of every answer; the apiserver ignores it,
// people debugging with curl do not.
type response struct {
	Accepted int    `json:"accepted"`
	Rejected int    `json:"rejected,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := rc.now()
	cluster := r.PathValue("cluster")
	// Until the body is read, an answer closes the connection: otherwise
	// net/http reads the rest of the body first to reuse the connection,
	// which a client trickling its body can make last as long as it likes.
	w.Header().Set("Connection", "close")
	if !ValidClusterID(cluster) {
		rc.fail(w, cluster, http.StatusNotFound, "invalid_cluster", fmt.Sprintf("cluster id %q in the path is not valid: want 1-63 characters of a-z 0-9 . _ -", cluster))
		return
	}
	// The cluster's own cap comes first: a cluster at its cap is refused
	// without touching the slots every cluster shares.
	if rc.perClus != nil {
		if !rc.perClus.acquire(cluster) {
			w.Header().Set("Retry-After", "1")
			rc.fail(w, cluster, http.StatusServiceUnavailable, "cluster_busy", fmt.Sprintf("cluster %s has %d requests in progress, retry later", cluster, rc.cfg.MaxConcurrentPerCluster))
			return
		}
		defer rc.perClus.release(cluster)
	}
	if rc.slots != nil {
		select {
		case rc.slots <- struct{}{}:
			defer func() { <-rc.slots }()
		default:
			w.Header().Set("Retry-After", "1")
			rc.fail(w, cluster, http.StatusServiceUnavailable, "too_many_requests", fmt.Sprintf("more than %d requests in progress, retry later", rc.cfg.MaxConcurrent))
			return
		}
	}
	body, release, status, err := rc.readBody(w, r)
	defer release()
	if err != nil {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		rc.fail(w, cluster, status, bodyReason(status), err.Error())
		return
	}
	w.Header().Del("Connection")
	rc.metrics.bytes.WithLabelValues(cluster).Add(float64(len(body)))

	var list eventList
	if err := json.Unmarshal(body, &list); err != nil {
		rc.fail(w, cluster, http.StatusBadRequest, "not_eventlist", "body is not an audit.k8s.io EventList: "+describeJSONError(body, err))
		return
	}
	if list.Kind != "" && list.Kind != "EventList" {
		rc.fail(w, cluster, http.StatusBadRequest, "not_eventlist", fmt.Sprintf("body is not an audit.k8s.io EventList: kind is %q", list.Kind))
		return
	}
	if list.APIVersion != "" && list.APIVersion != "audit.k8s.io/v1" && list.APIVersion != "audit.k8s.io/v1beta1" {
		rc.fail(w, cluster, http.StatusBadRequest, "not_eventlist", fmt.Sprintf("EventList apiVersion %q is not supported: want audit.k8s.io/v1 or audit.k8s.io/v1beta1", list.APIVersion))
		return
	}
	if list.Items == nil {
		rc.fail(w, cluster, http.StatusBadRequest, "not_eventlist", "body is not an audit.k8s.io EventList: no items array")
		return
	}

	records, rejected, truncated := rc.records(cluster, list.Items, start)
	ctx, cancel := contextWithTimeout(r, rc.cfg.PublishTimeout)
	defer cancel()
	if err := rc.pub.Produce(ctx, records...); err != nil {
		rc.logger.Error("publish batch failed; the apiserver will retry", "cluster", cluster, "events", len(list.Items), "err", err)
		w.Header().Set("Retry-After", "5")
		reason := "kafka_unavailable"
		if errors.Is(err, spool.ErrFull) {
			reason = "spool_full"
		}
		rc.fail(w, cluster, http.StatusServiceUnavailable, reason, "events were not stored, retry later: "+err.Error())
		return
	}
	rc.metrics.events.WithLabelValues(cluster, "accepted").Add(float64(len(list.Items) - rejected))
	rc.metrics.events.WithLabelValues(cluster, "dlq").Add(float64(rejected))
	rc.metrics.truncated.WithLabelValues(cluster).Add(float64(truncated))
	rc.metrics.requests.WithLabelValues("200").Inc()
	rc.metrics.latency.Observe(time.Since(start).Seconds())
	writeJSON(w, http.StatusOK, response{Accepted: len(list.Items) - rejected, Rejected: rejected})
}

// records turns the items into raw-topic records. An item that is not an
// audit event goes to the dead-letter topic with the reason, so that one
// bad item neither loses the rest of the batch nor makes the apiserver
// retry a batch that can never succeed.
func (rc *Receiver) records(cluster string, items []json.RawMessage, received time.Time) ([]kafka.Record, int, int) {
	receivedAt := []byte(received.UTC().Format(time.RFC3339Nano))
	version := []byte(strconv.Itoa(schemas.SchemaVersion))
	records := make([]kafka.Record, 0, len(items))
	rejected, truncated := 0, 0
	for i, item := range items {
		headers := []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte(cluster)},
			{Key: schemas.HeaderSource, Value: []byte(schemas.SourceWebhook)},
			{Key: schemas.HeaderReceivedAt, Value: receivedAt},
			{Key: schemas.HeaderSchemaVersion, Value: version},
		}
		id, value, cut, reason := event.Classify(item, rc.cfg.MaxEventBytes)
		if cut {
			truncated++
		}
		item = value
		if reason != "" {
			rejected++
			rc.logger.Warn("event rejected to the dead-letter topic", "cluster", cluster, "item", i, "reason", reason)
			records = append(records, kafka.Record{
				Topic: rc.cfg.Topics.DLQ,
				Key:   []byte(cluster),
				Value: item,
				Headers: append(headers,
					kafka.Header{Key: schemas.HeaderDLQReason, Value: []byte(fmt.Sprintf("item %d: %s", i, reason))},
					kafka.Header{Key: schemas.HeaderDLQStage, Value: []byte("producer")}),
			})
			continue
		}
		// Keyed by auditID: spreads load over partitions while keeping a
		// request's stages together and in order.
		records = append(records, kafka.Record{Topic: rc.cfg.Topics.Raw, Key: []byte(id.AuditID), Value: item, Headers: headers})
	}
	return records, rejected, truncated
}

// readBody reads the whole body, gunzipping it if needed, within the body
// read deadline and the memory budget. It refuses bodies over the limit
// with 413 without buffering them, and bodies the budget has no room for
// with 503. release gives the body's bytes back to the budget; it is never
// nil.
func (rc *Receiver) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), status int, err error) {
	release = func() {}
	if rc.cfg.BodyReadTimeout > 0 {
		// Per request, from now: the server's ReadTimeout counts from the
		// start of the connection's request, and a request that waited
		// for nothing gets the whole allowance. Servers that cannot set
		// deadlines (tests' recorders) keep their own.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(rc.cfg.BodyReadTimeout))
	}
	if r.ContentLength > rc.cfg.MaxBodyBytes {
		return nil, release, http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than the limit of %d bytes", rc.cfg.MaxBodyBytes)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, rc.cfg.MaxBodyBytes)
	sizeHint := r.ContentLength
	switch enc := strings.TrimSpace(r.Header.Get("Content-Encoding")); {
	case enc == "" || strings.EqualFold(enc, "identity"):
	case strings.EqualFold(enc, "gzip") || strings.EqualFold(enc, "x-gzip"):
		// Content codings are case-insensitive (RFC 9110 8.4.1).
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, release, readStatus(err, http.StatusBadRequest), fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		src, sizeHint = zr, 0
	default:
		return nil, release, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q is not supported: send gzip or no encoding", enc)
	}
	// The limit applies to the decoded size too: a small gzip body can
	// expand hugely. The budget bounds what all requests hold together.
	body, release, err = readAllBudgeted(src, rc.budget, rc.cfg.MaxBodyBytes, sizeHint)
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, errBudget):
		return nil, release, http.StatusServiceUnavailable, fmt.Errorf("%w (%d bytes), retry later", err, rc.cfg.MaxInflightBytes)
	case errors.As(err, &tooBig), err == nil && int64(len(body)) > rc.cfg.MaxBodyBytes:
		return nil, release, http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than the limit of %d bytes", rc.cfg.MaxBodyBytes)
	case err != nil:
		return nil, release, readStatus(err, http.StatusBadRequest), fmt.Errorf("read body: %w", err)
	}
	return body, release, 0, nil
}

// readStatus is 408 when err is the body read deadline, else def.
func readStatus(err error, def int) int {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return http.StatusRequestTimeout
	}
	return def
}

// bodyReason is the rejected-requests reason for a body error status.
func bodyReason(status int) string {
	switch status {
	case http.StatusServiceUnavailable:
		return "memory_budget"
	case http.StatusRequestTimeout:
		return "body_timeout"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusUnsupportedMediaType:
		return "unsupported_encoding"
	}
	return "bad_body"
}

func (rc *Receiver) fail(w http.ResponseWriter, cluster string, status int, reason, msg string) {
	rc.logger.Warn("webhook request rejected", "cluster", cluster, "status", status, "reason", reason, "err", msg)
	rc.metrics.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	rc.metrics.rejected.WithLabelValues(reason).Inc()
	writeJSON(w, status, response{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// describeJSONError adds the byte offset of a syntax error, so "not JSON"
// says where.
func describeJSONError(body []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d of %d: %v", se.Offset, len(body), err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type: %v", te.Field, err)
	}
	return err.Error()
}
