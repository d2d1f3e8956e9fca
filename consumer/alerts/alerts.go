// Package alerts delivers detection alerts from the alerts topic to the
// people who act on them: Alertmanager (its v2 API) and any webhook that
// takes Slack's incoming-webhook JSON. It is a kafka.Handler: each batch
// of schemas.Alert records is filtered (repeats within a window are
// dropped, each rule has a rate limit) and sent to every receiver with
// retries. A receiver that stays down past its retries loses those
// alerts (counted and logged): the alerts topic keeps them for replay,
// and one broken receiver must not hold back the others or the topic.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an alert, the values of the outcome label.
const (
	OutcomeDelivered   = "delivered"
	OutcomeDuplicate   = "duplicate"
	OutcomeRateLimited = "rate_limited"
	OutcomeFailed      = "failed"
	OutcomeInvalid     = "invalid"
)

// Receiver sends alerts somewhere. Send returns a *PermanentError when a
// retry cannot help (the receiver refused the request).
type Receiver interface {
	Name() string
	Send(ctx context.Context, alerts []schemas.Alert) error
}

// PermanentError is a refusal that a retry would meet again.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Config configures a Handler.
type Config struct {
	// DedupWindow: an alert with the same rule, cluster, principal, verb
	// and object as one delivered less than DedupWindow ago is dropped.
	// Zero disables deduplication.
	DedupWindow time.Duration
	// RatePerRule is how many alerts of one rule may go out per minute
	// (a burst of as many); the rest are dropped and counted. Zero means
	// no limit.
	RatePerRule int
	// Keep is how many recent alerts are kept for GET /api/v1/alerts
	// (default DefaultKeep).
	Keep int
	// MaxAttempts per receiver and batch, first try included.
	MaxAttempts int
	// Backoff is the wait before the second attempt, doubled for each
	// further one up to MaxBackoff.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DefaultConfig returns the defaults: 10 minute dedup window, 60 alerts
// per rule and minute, 5 attempts from 200 ms to 5 s apart.
func DefaultConfig() Config {
	return Config{DedupWindow: 10 * time.Minute, RatePerRule: 60, MaxAttempts: 5, Backoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

// Validate reports unusable settings.
func (c Config) Validate() error {
	switch {
	case c.DedupWindow < 0:
		return errors.New("alerts: dedup window is negative")
	case c.Keep < 0:
		return errors.New("alerts: keep is negative")
	case c.RatePerRule < 0:
		return errors.New("alerts: rate per rule is negative")
	case c.MaxAttempts < 1:
		return errors.New("alerts: max attempts must be at least 1")
	case c.Backoff < 0 || c.MaxBackoff < c.Backoff:
		return errors.New("alerts: backoff must be at least 0 and at most max backoff")
	}
	return nil
}

// Metrics of a Handler.
type Metrics struct {
	// Alerts counts alerts by rule, cluster and outcome.
	Alerts *prometheus.CounterVec
	// Attempts counts sends by receiver and result (ok, retry, failed).
	Attempts *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil
// registers nothing).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_alerts_total",
			Help: "Detection alerts read from the alerts topic, by rule, cluster and outcome (delivered to every receiver, duplicate, rate_limited, failed on some receiver, invalid record).",
		}, []string{"rule", "cluster", "outcome"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_alerts_send_attempts_total",
			Help: "Sends of alert batches to receivers, by receiver and result (ok, retry: failed and tried again, failed: gave up).",
		}, []string{"receiver", "result"}),
	}
	if reg != nil {
		if err := telemetry.RegisterAll(reg, m.Alerts, m.Attempts); err != nil {
			return nil, fmt.Errorf("alerts metrics: %w", err)
		}
	}
	return m, nil
}

// Handler is the kafka.Handler of the alerts topic.
type Handler struct {
	cfg       Config
	receivers []Receiver
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error

	recent *Recent

	mu      sync.Mutex
	seen    map[string]time.Time // dedup key -> last delivery
	buckets map[string]*bucket   // rule -> tokens
}

var _ kafka.Handler = (*Handler)(nil)

// New returns a Handler that sends to receivers. metrics and logger may
// be nil; now defaults to time.Now.
func New(cfg Config, receivers []Receiver, metrics *Metrics, logger *slog.Logger, now func() time.Time) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(receivers) == 0 {
		return nil, errors.New("alerts: no receivers")
	}
	if metrics == nil {
		metrics, _ = NewMetrics(nil) // registers nothing: cannot fail
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Handler{cfg: cfg, receivers: receivers, metrics: metrics, log: logger, now: now, sleep: sleepCtx,
		recent: NewRecent(cfg.Keep), seen: map[string]time.Time{}, buckets: map[string]*bucket{}}, nil
}

// Recent returns the alerts the handler read last, for the API.
func (h *Handler) Recent() *Recent { return h.recent }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Handle delivers the alerts of a batch. It returns an error only when
// ctx ends (the group then redelivers the batch).
func (h *Handler) Handle(ctx context.Context, b kafka.Batch) error {
	var out []schemas.Alert
	var keys []string
	var entries []Entry // every alert of the batch in record order, for Recent
	for _, rec := range b.Records {
		var a schemas.Alert
		if err := json.Unmarshal(rec.Value, &a); err != nil || a.Rule == "" {
			h.metrics.Alerts.WithLabelValues("", string(rec.HeaderValue(schemas.HeaderCluster)), OutcomeInvalid).Inc()
			h.log.Warn("alert record is not an alert", "topic", b.Topic, "partition", b.Partition, "offset", rec.Offset, "err", err)
			continue
		}
		key, outcome := h.admit(a)
		if outcome != "" {
			h.metrics.Alerts.WithLabelValues(a.Rule, a.Cluster, outcome).Inc()
			entries = append(entries, Entry{Alert: a, Outcome: outcome})
			continue
		}
		entries = append(entries, Entry{Alert: a}) // outcome once sent
		out = append(out, a)
		keys = append(keys, key)
	}
	if len(out) == 0 {
		h.remember(entries, "")
		return nil
	}
	failed := false
	for _, r := range h.receivers {
		if err := h.send(ctx, r, out); err != nil {
			if ctx.Err() != nil {
				h.forget(keys) // redelivered: let them through again
				return fmt.Errorf("deliver alerts: %w", ctx.Err())
			}
			failed = true
			h.log.Error("alerts not delivered", "receiver", r.Name(), "alerts", len(out), "err", err)
		}
	}
	outcome := OutcomeDelivered
	if failed {
		outcome = OutcomeFailed
	}
	for _, a := range out {
		h.metrics.Alerts.WithLabelValues(a.Rule, a.Cluster, outcome).Inc()
	}
	h.remember(entries, outcome)
	return nil
}

// remember adds a batch's alerts to Recent; sent is the outcome of those
// that were sent.
func (h *Handler) remember(entries []Entry, sent string) {
	for _, e := range entries {
		if e.Outcome == "" {
			e.Outcome = sent
		}
		h.recent.add(e)
	}
}

// send tries r until it accepts, refuses for good, or the attempts run out.
func (h *Handler) send(ctx context.Context, r Receiver, alerts []schemas.Alert) error {
	wait := h.cfg.Backoff
	var err error
	for attempt := 1; ; attempt++ {
		if err = r.Send(ctx, alerts); err == nil {
			h.metrics.Attempts.WithLabelValues(r.Name(), "ok").Inc()
			return nil
		}
		var perm *PermanentError
		if errors.As(err, &perm) || attempt >= h.cfg.MaxAttempts || ctx.Err() != nil {
			h.metrics.Attempts.WithLabelValues(r.Name(), "failed").Inc()
			return fmt.Errorf("%s: attempt %d: %w", r.Name(), attempt, err)
		}
		h.metrics.Attempts.WithLabelValues(r.Name(), "retry").Inc()
		h.log.Warn("alert receiver failed, retrying", "receiver", r.Name(), "attempt", attempt, "wait", wait, "err", err)
		if serr := h.sleep(ctx, wait); serr != nil {
			return serr
		}
		wait = min(2*wait, h.cfg.MaxBackoff)
	}
}

// dedupKey names the incident an alert reports: the same rule firing for
// the same principal doing the same thing to the same object.
func dedupKey(a schemas.Alert) string {
	obj := a.RequestURI
	if o := a.Object; o != nil {
		obj = strings.Join([]string{o.APIGroup, o.Resource, o.Subresource, o.Namespace, o.Name}, "/")
	}
	return strings.Join([]string{a.Rule, a.Cluster, a.Principal.Username, a.Verb, obj}, "\x00")
}

// admit applies deduplication and the rule's rate limit; it returns the
// dedup key, and an outcome when the alert is dropped.
func (h *Handler) admit(a schemas.Alert) (string, string) {
	now := h.now()
	key := dedupKey(a)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cfg.DedupWindow > 0 {
		if len(h.seen) > 10000 {
			for k, t := range h.seen {
				if now.Sub(t) >= h.cfg.DedupWindow {
					delete(h.seen, k)
				}
			}
		}
		if t, ok := h.seen[key]; ok && now.Sub(t) < h.cfg.DedupWindow {
			return key, OutcomeDuplicate
		}
	}
	if h.cfg.RatePerRule > 0 {
		b := h.buckets[a.Rule]
		if b == nil {
			b = &bucket{tokens: float64(h.cfg.RatePerRule), last: now}
			h.buckets[a.Rule] = b
		}
		if !b.take(now, float64(h.cfg.RatePerRule)/60) {
			return key, OutcomeRateLimited
		}
	}
	if h.cfg.DedupWindow > 0 {
		h.seen[key] = now
	}
	return key, ""
}

func (h *Handler) forget(keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		delete(h.seen, k)
	}
}

// bucket is a token bucket refilled at a rate per second up to its
// initial size.
type bucket struct {
	tokens float64
	size   float64
	last   time.Time
}

func (b *bucket) take(now time.Time, perSecond float64) bool {
	if b.size == 0 {
		b.size = b.tokens
	}
	b.tokens = min(b.size, b.tokens+now.Sub(b.last).Seconds()*perSecond)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
