package schemas

import "time"

// Alert is the value of a record on the alerts topic: one detection rule
// matched one audit event. It carries what a responder needs to triage
// without the event's bodies (which may hold secrets); Event locates the
// raw record for the whole story.
type Alert struct {
	Rule        string `json:"rule"`
	Severity    string `json:"severity" desc:"info, low, medium, high or critical."`
	Technique   string `json:"technique,omitempty" desc:"MITRE ATT&CK technique id, e.g. T1611."`
	Description string `json:"description"`
	Cluster     string `json:"cluster"`
	// Principal is who made the request: the user name and its class.
	Principal AlertPrincipal `json:"principal"`
	// Impersonated is the impersonated user, when there was one.
	Impersonated *AlertPrincipal `json:"impersonated,omitempty"`
	Verb         string          `json:"verb"`
	Object       *AlertObject    `json:"object,omitempty" desc:"What the request was about; absent for non-resource requests (see requestURI)."`
	RequestURI   string          `json:"requestURI"`
	AuditID      string          `json:"auditID"`
	Stage        string          `json:"stage"`
	// Time is the event's stageTimestamp: when the apiserver recorded it.
	Time       time.Time `json:"time"`
	SourceIP   string    `json:"sourceIP,omitempty"`
	UserAgent  string    `json:"userAgent,omitempty"`
	Code       int32     `json:"code,omitempty" desc:"The response code, absent before the response."`
	DetectedAt time.Time `json:"detectedAt" desc:"When the processor evaluated the rule."`
	// Event locates the raw record of the event (the event as the
	// apiserver sent it, on the raw topic).
	Event Origin `json:"event"`
}

// AlertPrincipal is a user name with its classification.
type AlertPrincipal struct {
	Username  string   `json:"username"`
	Groups    []string `json:"groups,omitempty"`
	Type      string   `json:"type" desc:"human, serviceaccount, node, control-plane, anonymous or unauthenticated."`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name,omitempty"`
}

// AlertObject names the object of the request.
type AlertObject struct {
	APIGroup    string `json:"apiGroup,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
}
