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
// PipelineKey.
type ProcessedEvent struct {
	Event
	Pipeline Pipeline `json:"auditpipe" desc:"Fields added by auditpipe; everything else is the apiserver's audit.k8s.io/v1 Event."`
}

// Event mirrors audit.k8s.io/v1 Event with the standard library only, so
// that consumers of this package need not import k8s.io/apiserver. Request
// and response bodies stay raw JSON.
type Event struct {
	Kind                     string            `json:"kind" desc:"Always Event."`
	APIVersion               string            `json:"apiVersion" desc:"Always audit.k8s.io/v1."`
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
}

// Origin locates the raw record an event came from.
type Origin struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}
