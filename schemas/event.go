package schemas

import (
	"encoding/json"
	"time"
)

// PipelineKey is the top-level key under which the processor adds its own
// fields to an apiserver event. Everything else in a ProcessedEvent is the
// apiserver's audit.k8s.io/v1 Event, so tools that read audit events keep
// working and ignore the extra key.
const PipelineKey = "auditpipe"

// ProcessedEvent is the value of a record on the events topic: an
// audit.k8s.io/v1 Event (after policy and redaction) plus Pipeline under
// PipelineKey. The processor writes the event's JSON as the apiserver
// sent it, members this type does not know included; decoding into this
// type reads only the members it names.
type ProcessedEvent struct {
	Event
	Pipeline Pipeline `json:"auditpipe" desc:"Fields added by auditpipe; everything else is the apiserver's audit.k8s.io/v1 Event."`
}

// Event mirrors audit.k8s.io/v1 Event with the standard library only, so
// that consumers of this package need not import k8s.io/apiserver. Request
// and response bodies stay raw JSON.
type Event struct {
	Kind                     string            `json:"kind,omitempty" desc:"Event, as the apiserver sent it; absent on events that came as items of a webhook EventList."`
	APIVersion               string            `json:"apiVersion,omitempty" desc:"audit.k8s.io/v1 (or v1beta1), as the apiserver sent it; absent on events that came as items of a webhook EventList."`
	Level                    string            `json:"level" desc:"Audit level after policy: Metadata, Request or RequestResponse."`
	AuditID                  string            `json:"auditID" desc:"Unique per request; shared by the request's stages."`
	Stage                    string            `json:"stage" desc:"RequestReceived, ResponseStarted, ResponseComplete or Panic."`
	RequestURI               string            `json:"requestURI"`
	Verb                     string            `json:"verb" desc:"Kubernetes verb (get, list, watch, create, update, patch, delete, ...) or lowercased HTTP method for non-resource requests."`
	User                     UserInfo          `json:"user"`
	ImpersonatedUser         *UserInfo         `json:"impersonatedUser,omitempty"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *ObjectReference  `json:"objectRef,omitempty"`
	ResponseStatus           *Status           `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty" desc:"Request body; present at level Request and above."`
	ResponseObject           json.RawMessage   `json:"responseObject,omitempty" desc:"Response body; present at level RequestResponse."`
	RequestReceivedTimestamp time.Time         `json:"requestReceivedTimestamp"`
	StageTimestamp           time.Time         `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations,omitempty"`
}

// UserInfo is the authenticated user of a request.
type UserInfo struct {
	Username string              `json:"username,omitempty"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// ObjectReference names the object a request was about.
type ObjectReference struct {
	Resource        string `json:"resource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
}

// Status is the part of metav1.Status an audit event carries.
type Status struct {
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Status   string          `json:"status,omitempty"`
	Message  string          `json:"message,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
	Code     int32           `json:"code,omitempty"`
}

// Pipeline is what auditpipe adds to an event.
type Pipeline struct {
	SchemaVersion int       `json:"schemaVersion" desc:"SchemaVersion of this record."`
	Cluster       string    `json:"cluster" desc:"Cluster id, bound to the producer's caller."`
	Source        string    `json:"source" desc:"How the event arrived: webhook or file."`
	ReceivedAt    time.Time `json:"receivedAt" desc:"When the producer received the event."`
	ProcessedAt   time.Time `json:"processedAt" desc:"When the processor handled the event."`
	OriginalLevel string    `json:"originalLevel" desc:"Level the apiserver recorded, before the pipeline's policy lowered it."`
	Origin        Origin    `json:"origin" desc:"Where the raw record is on the raw topic, for replay and audit of the pipeline itself."`

	// The fields below were added in schema version 1 without a bump:
	// they are optional and additive, so readers of the earlier layout
	// keep working.

	// Redacted lists what the processor's redaction replaced with
	// RedactedValue, whatever the policy said.
	Redacted []string `json:"redacted,omitempty" desc:"JSON Pointers (RFC 6901, from the event's root) of the values replaced with the redaction marker, e.g. /requestObject/data/password. Absent when nothing was redacted."`
	// Truncated is true when the event lost its bodies because it was over
	// the size limit.
	Truncated bool `json:"truncated,omitempty" desc:"True when the bodies were dropped because the event was over the size limit (the event also carries the annotation audit.k8s.io/truncated)."`
	// ClusterInfo is the cluster's entry in the fleet registry.
	ClusterInfo *ClusterInfo `json:"clusterInfo,omitempty" desc:"The cluster's entry in the fleet registry; absent when the cluster is not in the registry."`
	// Principal classifies who made the request.
	Principal *Principal `json:"principal,omitempty" desc:"Who made the request: the authenticated user, classified."`
	// Impersonated classifies the impersonated user, when there was one.
	Impersonated *Principal `json:"impersonated,omitempty" desc:"The user the request impersonated, classified; absent without impersonation."`
	Operation    string     `json:"operation,omitempty" desc:"Operation class: read, write, delete, exec (exec, attach, port-forward), rbac (changes to RBAC objects), auth-check (token and access reviews) or other."`
	Outcome      string     `json:"outcome,omitempty" desc:"success (code below 400), denied (authorization decision forbid, or code 401 or 403), failed (any other code from 400, or stage Panic) or unknown (no response yet, e.g. stage RequestReceived)."`
	LatencyMs    *float64   `json:"latencyMs,omitempty" desc:"stageTimestamp minus requestReceivedTimestamp in milliseconds (microsecond precision); absent when a timestamp is missing or they are out of order."`
	SourceIP     string     `json:"sourceIP,omitempty" desc:"The first of sourceIPs: the client as the apiserver saw it (further entries are proxies, untrusted)."`
	SourceIPType string     `json:"sourceIPType,omitempty" desc:"private (RFC 1918, RFC 4193, shared address space), loopback, link-local, public, or invalid (not an IP address)."`
	// AuditIDReused marks an event whose (cluster, auditID, stage) was
	// already seen with different content: the apiserver takes auditIDs
	// from a client header, so a reused id is evidence, never a duplicate.
	AuditIDReused bool `json:"auditIDReused,omitempty" desc:"True when another event with the same cluster, auditID and stage but different content was stored before this one (a client reused the Audit-ID header). Both events are kept."`
	// Cut lists what was replaced with CutValue.
	Cut []string `json:"cut,omitempty" desc:"JSON Pointers (RFC 6901, from the event's root) of the objects and arrays replaced with the marker auditpipe:cut because they were nested deeper than the processor keeps (256 levels). Absent when nothing was cut."`
	// ContentHash identifies the event's content as the apiserver sent
	// it, so that a retransmission (same hash) collapses and a different
	// event under a reused auditID (other hash) is kept (decision 0012).
	ContentHash string `json:"contentHash,omitempty" desc:"Lowercase hex SHA-256 of the canonical form of the raw event as the apiserver sent it (before policy and redaction; whitespace, key order, string escapes and number spelling do not count; the top-level kind and apiVersion are left out). Events with the same cluster, auditID, stage and contentHash are one event delivered more than once. Absent on events processed before it was introduced."`
	// Detections lists the ids of the detection rules the event matched,
	// evaluated on the event as the apiserver sent it.
	Detections []string `json:"detections,omitempty" desc:"Ids of the detection rules this event matched (evaluated before the policy lowered its level). Absent when none matched."`
}

// RedactedValue replaces every redacted value (a Secret's data and
// stringData values, tokens, a Secret's last-applied-configuration). It is
// a fixed string, so it reveals nothing, not even the length.
const RedactedValue = "auditpipe:redacted"

// CutValue replaces an object or array nested deeper than the processor
// keeps (JSON readers such as SQLite's fail on very deep documents); the
// rest of the event is kept and Pipeline.Cut says where.
const CutValue = "auditpipe:cut"

// ClusterInfo is what the fleet registry says about a cluster.
type ClusterInfo struct {
	DisplayName string `json:"displayName,omitempty"`
	Region      string `json:"region,omitempty"`
	Environment string `json:"environment,omitempty"`
	Owner       string `json:"owner,omitempty"`
}

// Principal types.
const (
	PrincipalHuman           = "human"
	PrincipalServiceAccount  = "serviceaccount"
	PrincipalNode            = "node"
	PrincipalControlPlane    = "control-plane"
	PrincipalAnonymous       = "anonymous"
	PrincipalUnauthenticated = "unauthenticated"
)

// Operation classes.
const (
	OperationRead      = "read"
	OperationWrite     = "write"
	OperationDelete    = "delete"
	OperationExec      = "exec"
	OperationRBAC      = "rbac"
	OperationAuthCheck = "auth-check"
	OperationOther     = "other"
)

// Outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailed  = "failed"
	OutcomeUnknown = "unknown"
)

// Source IP types.
const (
	SourceIPPrivate   = "private"
	SourceIPLoopback  = "loopback"
	SourceIPLinkLocal = "link-local"
	SourceIPPublic    = "public"
	SourceIPInvalid   = "invalid"
)

// Principal is a classified user.
type Principal struct {
	Type string `json:"type" desc:"human, serviceaccount, node, control-plane, anonymous or unauthenticated."`
	// Namespace and Name are set for service accounts (their namespace and
	// name) and nodes (Name is the node name).
	Namespace string `json:"namespace,omitempty" desc:"Namespace of a service account."`
	Name      string `json:"name,omitempty" desc:"Name of a service account or node."`
}

// Origin locates the raw record an event came from.
type Origin struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}
