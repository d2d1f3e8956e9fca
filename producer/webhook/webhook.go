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
	"regexp"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/producer/event"
	"github.com/auditpipe/auditpipe/producer/spool"
	"github.com/auditpipe/auditpipe/schemas"
)

// PathPrefix is where the receiver listens; the cluster id follows it.
const PathPrefix = "/v1/audit/"

// clusterIDPattern keeps cluster ids usable as Kafka keys, CLS topic names
// and file names.
var clusterIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidClusterID reports whether id is an acceptable cluster id: 1 to 63
// lower-case letters, digits, '.', '_' or '-', starting and ending with a
// letter or digit.
func ValidClusterID(id string) bool { return clusterIDPattern.MatchString(id) }

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
}

// DefaultConfig returns the defaults: 64 MiB bodies (400 events of up to
// 45 KB at RequestResponse with room to spare) and a 20 s publish timeout,
// under the apiserver's 30 s request timeout.
//
// MaxEventBytes is 900 KiB, under Kafka's default message.max.bytes of
// 1 MiB with room for headers; MaxConcurrent is 64 requests.
func DefaultConfig() Config {
	return Config{Topics: schemas.DefaultTopics(), MaxBodyBytes: 64 << 20, PublishTimeout: 20 * time.Second, MaxEventBytes: 900 << 10, MaxConcurrent: 64}
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
	if c.MaxConcurrent < 0 {
		return errors.New("webhook: maxConcurrent must not be negative")
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
	slots   chan struct{} // nil: no concurrency cap
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
	if !ValidClusterID(cluster) {
		rc.fail(w, cluster, http.StatusNotFound, "invalid_cluster", fmt.Sprintf("cluster id %q in the path is not valid: want 1-63 characters of a-z 0-9 . _ -", cluster))
		return
	}
	body, status, err := rc.readBody(w, r)
	if err != nil {
		rc.fail(w, cluster, status, "bad_body", err.Error())
		return
	}
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

// readBody reads the whole body, gunzipping it if needed, and refuses
// bodies over the limit with 413 without buffering them.
func (rc *Receiver) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	var src io.Reader = http.MaxBytesReader(w, r.Body, rc.cfg.MaxBodyBytes)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		// Bound the decoded size too: a small gzip body can expand hugely.
		src = io.LimitReader(zr, rc.cfg.MaxBodyBytes+1)
	}
	body, err := io.ReadAll(src)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig), int64(len(body)) > rc.cfg.MaxBodyBytes:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than the limit of %d bytes", rc.cfg.MaxBodyBytes)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	return body, 0, nil
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
