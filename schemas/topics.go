package schemas

import "fmt"

// Default topic names. Every stage takes them from configuration so that
// several pipelines can share one Kafka cluster.
const (
	DefaultRawTopic    = "audit.raw"
	DefaultEventsTopic = "audit.events"
	DefaultDLQTopic    = "audit.dlq"
	// DefaultAlertsTopic holds one Alert per detection rule match.
	DefaultAlertsTopic = "audit.alerts"
)

// Topics names the three topics of a pipeline.
type Topics struct {
	// Raw holds the events exactly as the apiserver sent them, one record
	// per event. It is the system of record for replay.
	Raw string `json:"raw" yaml:"raw"`
	// Events holds processed events (ProcessedEvent), keyed by cluster.
	Events string `json:"events" yaml:"events"`
	// DLQ holds records that could not be processed, with the reason in
	// headers and the original bytes as value.
	DLQ string `json:"dlq" yaml:"dlq"`
	// Alerts holds one Alert per detection rule match, keyed by cluster.
	// Empty means detections are only stored with the events.
	Alerts string `json:"alerts,omitempty" yaml:"alerts,omitempty"`
}

// DefaultTopics returns the default topic names.
func DefaultTopics() Topics {
	return Topics{Raw: DefaultRawTopic, Events: DefaultEventsTopic, DLQ: DefaultDLQTopic, Alerts: DefaultAlertsTopic}
}

// Validate reports empty or clashing topic names. Only Alerts may be
// empty.
func (t Topics) Validate() error {
	names := map[string]string{"raw": t.Raw, "events": t.Events, "dlq": t.DLQ, "alerts": t.Alerts}
	seen := map[string]string{}
	for _, role := range []string{"raw", "events", "dlq", "alerts"} {
		name := names[role]
		if name == "" && role == "alerts" {
			continue
		}
		if name == "" {
			return fmt.Errorf("topics.%s: must not be empty", role)
		}
		if other, dup := seen[name]; dup {
			return fmt.Errorf("topics.%s: %q is also the %s topic", role, name, other)
		}
		seen[name] = role
	}
	return nil
}
