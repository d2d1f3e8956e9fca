// Package eventgen builds synthetic ProcessedEvents of a chosen size for
// the consumer's load tests and benchmarks, where the real fixtures
// (sink/local/localtest) are too few: the shape is that of a real
// ResponseComplete event, the size is padded with a requestObject.
package eventgen

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/auditpipe/auditpipe/schemas"
)

// Event returns the JSON of a ProcessedEvent of cluster with the given
// auditID, about size bytes long (at least ~700).
func Event(cluster, auditID string, size int, ts time.Time) []byte {
	ev := schemas.ProcessedEvent{
		Event: schemas.Event{
			Kind: "Event", APIVersion: "audit.k8s.io/v1", Level: "Request",
			AuditID: auditID, Stage: "ResponseComplete",
			RequestURI: "/api/v1/namespaces/team-a/configmaps/app-config",
			Verb:       "update",
			User: schemas.UserInfo{Username: "system:serviceaccount:team-a:deployer",
				Groups: []string{"system:serviceaccounts", "system:authenticated"}},
			SourceIPs: []string{"10.0.3.17"}, UserAgent: "kubectl/v1.31.0 (linux/amd64)",
			ObjectRef:                &schemas.ObjectReference{Resource: "configmaps", Namespace: "team-a", Name: "app-config", APIVersion: "v1"},
			ResponseStatus:           &schemas.Status{Code: 200},
			RequestReceivedTimestamp: ts.Add(-3 * time.Millisecond),
			StageTimestamp:           ts,
			Annotations:              map[string]string{"authorization.k8s.io/decision": "allow"},
		},
		Pipeline: schemas.Pipeline{SchemaVersion: schemas.SchemaVersion, Cluster: cluster, Source: "webhook", ReceivedAt: ts},
	}
	base, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("eventgen: %v", err)) // static types: cannot happen
	}
	pad := max(size-len(base)-40, 0)
	ev.RequestObject = json.RawMessage(`{"kind":"ConfigMap","data":{"k":"` + strings.Repeat("x", pad) + `"}}`)
	out, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("eventgen: %v", err))
	}
	return out
}
