package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/telemetry"
	"github.com/auditpipe/auditpipe/processor/detect"
	"github.com/auditpipe/auditpipe/processor/enrich"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Detection happens here, in one call from process: on the event as the
// apiserver sent it, before the policy lowers its level (detections need
// bodies the store may not keep) and before redaction (which only
// replaces values rules do not test). Alerts carry no bodies.

// DetectionMetrics count rule matches and rule errors. They count when a
// rule is evaluated, so a batch the group redelivers counts again.
type DetectionMetrics struct {
	Matches *prometheus.CounterVec
	Errors  *prometheus.CounterVec
}

// NewDetectionMetrics creates the metrics and registers them with reg
// (nil registers nothing).
func NewDetectionMetrics(reg prometheus.Registerer) (*DetectionMetrics, error) {
	m := &DetectionMetrics{
		Matches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_processor_detections_total",
			Help: "Detection rule matches, by rule id (counted at evaluation: a redelivered batch counts again).",
		}, []string{"rule"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditpipe_processor_detection_errors_total",
			Help: "Detection rules that could not be evaluated on an event (malformed body), by rule id; the rule did not match.",
		}, []string{"rule"}),
	}
	if reg != nil {
		if err := telemetry.RegisterAll(reg, m.Matches, m.Errors); err != nil {
			return nil, fmt.Errorf("detection metrics: %w", err)
		}
	}
	return m, nil
}

// matched and failed count; a pipeline without metrics (nil) skips them.
func (m *DetectionMetrics) matched(rule string) {
	if m != nil {
		m.Matches.WithLabelValues(rule).Inc()
	}
}

func (m *DetectionMetrics) failed(rule string) {
	if m != nil {
		m.Errors.WithLabelValues(rule).Inc()
	}
}

// WithDetectionMetrics sets the detection metrics (default unregistered).
func WithDetectionMetrics(m *DetectionMetrics) Option {
	return func(p *Pipeline) { p.detections = m }
}

// detect evaluates the cluster's rules on ev, appends one record per
// match to alerts (when the alerts topic is configured) and returns the
// matched rule ids for auditpipe.detections.
func (p *Pipeline) detect(fl *Fleet, pl *schemas.Pipeline, ev *schemas.Event, alerts *[]kafka.Record) []string {
	rules := fl.Detections.For(pl.Cluster)
	if rules == nil {
		return nil
	}
	matches, errs := rules.Evaluate(ev, pl)
	for _, e := range errs {
		p.detections.failed(e.Rule)
		p.log.Debug("detection rule failed", "rule", e.Rule, "err", e.Err, "cluster", pl.Cluster, "auditID", ev.AuditID,
			"origin", originString(pl.Origin))
	}
	if len(matches) == 0 {
		return nil
	}
	ids := make([]string, len(matches))
	for i, r := range matches {
		ids[i] = r.ID
		p.detections.matched(r.ID)
		if p.cfg.Topics.Alerts == "" {
			continue
		}
		rec, err := AlertRecord(p.cfg.Topics.Alerts, r, pl, ev, p.now().UTC())
		if err != nil {
			p.log.Error("encode alert", "rule", r.ID, "err", err) // cannot happen: plain types
			continue
		}
		*alerts = append(*alerts, rec)
	}
	return ids
}

// AlertRecord is the audit.alerts record of rule r matching ev: a
// schemas.Alert keyed by cluster, as the processor writes it.
func AlertRecord(topic string, r *detect.Rule, pl *schemas.Pipeline, ev *schemas.Event, now time.Time) (kafka.Record, error) {
	value, err := json.Marshal(newAlert(r, pl, ev, now))
	if err != nil {
		return kafka.Record{}, fmt.Errorf("encode alert of rule %s: %w", r.ID, err)
	}
	return kafka.Record{
		Topic: topic,
		Key:   []byte(pl.Cluster),
		Value: value,
		Headers: []kafka.Header{
			{Key: schemas.HeaderCluster, Value: []byte(pl.Cluster)},
			{Key: schemas.HeaderSchemaVersion, Value: []byte(strconv.Itoa(schemas.SchemaVersion))},
		},
	}, nil
}

// ReusedAuditIDAlerts returns the alert records of the rules that match a
// stored event only because the store marked its auditID as reused
// (auditpipe.auditIDReused, decision 0012): the stateless processor could
// not raise them, since the marker is set after it ran. They are the
// rules of the event's cluster that match the event with the marker and
// not without it, so the shipped auditid-reused rule and any user rule on
// the marker raise alerts, with their metadata from the rules file, and
// no rule the processor already raised is raised twice. processed is the
// ProcessedEvent JSON as stored. Rule errors are returned with the
// records of the rules that did evaluate.
func ReusedAuditIDAlerts(rules *detect.Fleet, topic string, processed []byte, now time.Time) ([]kafka.Record, error) {
	var pe schemas.ProcessedEvent
	if err := json.Unmarshal(processed, &pe); err != nil {
		return nil, fmt.Errorf("decode reused event: %w", err)
	}
	set := rules.For(pe.Pipeline.Cluster)
	if set == nil {
		return nil, nil
	}
	unmarked := pe.Pipeline
	unmarked.AuditIDReused = false
	before, _ := set.Evaluate(&pe.Event, &unmarked)
	marked := pe.Pipeline
	marked.AuditIDReused = true
	after, errs := set.Evaluate(&pe.Event, &marked)
	var out []kafka.Record
	var errList []error
	for _, e := range errs {
		errList = append(errList, e)
	}
	for _, r := range after {
		if slices.Contains(before, r) {
			continue
		}
		rec, err := AlertRecord(topic, r, &marked, &pe.Event, now)
		if err != nil {
			errList = append(errList, err)
			continue
		}
		out = append(out, rec)
	}
	return out, errors.Join(errList...)
}

func newAlert(r *detect.Rule, pl *schemas.Pipeline, ev *schemas.Event, now time.Time) schemas.Alert {
	a := schemas.Alert{Rule: r.ID, Severity: r.Severity, Technique: r.Technique, Description: r.Description,
		Cluster: pl.Cluster, Principal: principal(ev.User), Verb: ev.Verb, RequestURI: ev.RequestURI,
		AuditID: ev.AuditID, Stage: ev.Stage, Time: ev.StageTimestamp.UTC(), UserAgent: ev.UserAgent,
		DetectedAt: now, Event: pl.Origin}
	if ev.ImpersonatedUser != nil {
		ip := principal(*ev.ImpersonatedUser)
		a.Impersonated = &ip
	}
	if len(ev.SourceIPs) > 0 {
		a.SourceIP = ev.SourceIPs[0]
	}
	if ev.ResponseStatus != nil {
		a.Code = ev.ResponseStatus.Code
	}
	if ref := ev.ObjectRef; ref != nil {
		a.Object = &schemas.AlertObject{APIGroup: ref.APIGroup, Resource: ref.Resource, Subresource: ref.Subresource,
			Namespace: ref.Namespace, Name: ref.Name}
		if a.Object.Name == "" {
			// A create names its object in the body (or the apiserver
			// generates the name and returns it).
			a.Object.Name = detect.ObjectName(ev.ResponseObject)
			if a.Object.Name == "" {
				a.Object.Name = detect.ObjectName(ev.RequestObject)
			}
		}
	}
	return a
}

func principal(u schemas.UserInfo) schemas.AlertPrincipal {
	c := enrich.ClassifyUser(u)
	return schemas.AlertPrincipal{Username: u.Username, Groups: u.Groups, Type: c.Type, Namespace: c.Namespace, Name: c.Name}
}
