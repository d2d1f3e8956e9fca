package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/schemas"
)

// Alertmanager posts alerts to an Alertmanager's v2 API
// (POST <URL>/api/v2/alerts), the way Prometheus does.
type Alertmanager struct {
	// URL is the Alertmanager's base URL, e.g. http://alertmanager:9093.
	URL    string
	Client *http.Client
	// ResolveAfter sets endsAt: an audit event is a point in time, so its
	// alert resolves by itself. Default one hour.
	ResolveAfter time.Duration
}

// Name implements Receiver.
func (am *Alertmanager) Name() string { return "alertmanager" }

// postableAlert is Alertmanager's v2 PostableAlert.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Labels identify the incident (Alertmanager deduplicates and groups on
// them); everything else about the event goes into annotations.
func amAlert(a schemas.Alert, resolveAfter time.Duration) postableAlert {
	labels := map[string]string{
		"alertname": a.Rule,
		"severity":  a.Severity,
		"cluster":   a.Cluster,
		"principal": a.Principal.Username,
		"source":    "auditpipe",
	}
	if a.Technique != "" {
		labels["technique"] = a.Technique
	}
	if a.Object != nil && a.Object.Namespace != "" {
		labels["namespace"] = a.Object.Namespace
	}
	start := a.Time
	if start.IsZero() {
		start = a.DetectedAt
	}
	return postableAlert{
		Labels: labels,
		Annotations: map[string]string{
			"summary":     summary(a),
			"description": a.Description,
			"auditID":     a.AuditID,
			"stage":       a.Stage,
			"verb":        a.Verb,
			"object":      object(a),
			"sourceIP":    a.SourceIP,
			"event":       fmt.Sprintf("%s/%d/%d", a.Event.Topic, a.Event.Partition, a.Event.Offset),
		},
		StartsAt: start,
		EndsAt:   start.Add(resolveAfter),
	}
}

// Send implements Receiver.
func (am *Alertmanager) Send(ctx context.Context, alerts []schemas.Alert) error {
	ra := am.ResolveAfter
	if ra <= 0 {
		ra = time.Hour
	}
	body := make([]postableAlert, len(alerts))
	for i, a := range alerts {
		body[i] = amAlert(a, ra)
	}
	return post(ctx, am.Client, strings.TrimSuffix(am.URL, "/")+"/api/v2/alerts", body)
}

// Webhook posts one Slack-compatible message ({"text": ...}) per alert;
// Slack's, Mattermost's and most chat tools' incoming webhooks take it.
type Webhook struct {
	URL    string
	Client *http.Client
}

// Name implements Receiver.
func (w *Webhook) Name() string { return "webhook" }

// Send implements Receiver.
func (w *Webhook) Send(ctx context.Context, alerts []schemas.Alert) error {
	for _, a := range alerts {
		msg := map[string]any{
			"text": fmt.Sprintf("[%s] %s: %s\n%s\nauditID %s, event %s/%d/%d", strings.ToUpper(a.Severity), a.Rule, summary(a),
				a.Description, a.AuditID, a.Event.Topic, a.Event.Partition, a.Event.Offset),
			"alert": a, // the whole record, for receivers that read JSON
		}
		if err := post(ctx, w.Client, w.URL, msg); err != nil {
			return err
		}
	}
	return nil
}

func summary(a schemas.Alert) string {
	return fmt.Sprintf("%s %s %s in cluster %s", a.Principal.Username, a.Verb, object(a), a.Cluster)
}

func object(a schemas.Alert) string {
	o := a.Object
	if o == nil {
		return a.RequestURI
	}
	s := o.Resource
	if o.Subresource != "" {
		s += "/" + o.Subresource
	}
	if o.Name != "" {
		s += " " + o.Name
	}
	if o.Namespace != "" {
		s += " in namespace " + o.Namespace
	}
	return s
}

// post sends v as JSON; a 4xx answer other than 408 and 429 is permanent.
func post(ctx context.Context, client *http.Client, url string, v any) error {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("encode: %w", err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return &PermanentError{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("post %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return &PermanentError{Err: err}
	}
	return err
}
