// Package enrich derives the fields an auditor filters on from an audit
// event: who made the request (principal type), what kind of operation it
// was, how it ended, how long it took and where it came from. They are
// written under schemas.Pipeline so that the apiserver's event stays as
// it was recorded.
package enrich

import (
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/auditpipe/auditpipe/internal/fleet"
	"github.com/auditpipe/auditpipe/schemas"
)

// DecisionAnnotation is the authorizer's verdict the apiserver records.
const DecisionAnnotation = "authorization.k8s.io/decision"

// controlPlaneUsers are the identities of control-plane components: the
// apiserver itself (and its loopback client), the controller managers,
// the scheduler, and TKE's unsecured local port.
var controlPlaneUsers = []string{
	"system:apiserver",
	"system:kube-controller-manager",
	"system:kube-scheduler",
	"system:cloud-controller-manager",
	"system:unsecured",
	"system:kube-aggregator",
}

// Fill sets the enrichment fields of pl from ev.
func Fill(pl *schemas.Pipeline, ev *schemas.Event) {
	p := ClassifyUser(ev.User)
	pl.Principal = &p
	if ev.ImpersonatedUser != nil {
		ip := ClassifyUser(*ev.ImpersonatedUser)
		pl.Impersonated = &ip
	}
	pl.Operation = Operation(ev)
	pl.Outcome = Outcome(ev)
	if ms, ok := LatencyMs(ev); ok {
		pl.LatencyMs = &ms
	}
	if len(ev.SourceIPs) > 0 {
		pl.SourceIP = ev.SourceIPs[0]
		pl.SourceIPType = IPType(ev.SourceIPs[0])
	}
}

// ClassifyUser says what kind of principal u is.
func ClassifyUser(u schemas.UserInfo) schemas.Principal {
	name := u.Username
	switch {
	case name == "system:anonymous":
		return schemas.Principal{Type: schemas.PrincipalAnonymous}
	case name == "":
		// The apiserver records failed authentication with an empty user.
		return schemas.Principal{Type: schemas.PrincipalUnauthenticated}
	case strings.HasPrefix(name, "system:serviceaccount:"):
		ns, sa, ok := strings.Cut(strings.TrimPrefix(name, "system:serviceaccount:"), ":")
		if ok && ns != "" && sa != "" {
			return schemas.Principal{Type: schemas.PrincipalServiceAccount, Namespace: ns, Name: sa}
		}
	case strings.HasPrefix(name, "system:node:"):
		return schemas.Principal{Type: schemas.PrincipalNode, Name: strings.TrimPrefix(name, "system:node:")}
	case name == "system:kube-proxy" || name == "kubelet" || slices.Contains(u.Groups, "system:nodes"):
		// Node agents: kube-proxy's and (on some distributions, e.g. TKE)
		// the kubelet's shared identity.
		return schemas.Principal{Type: schemas.PrincipalNode}
	case slices.Contains(controlPlaneUsers, name):
		return schemas.Principal{Type: schemas.PrincipalControlPlane}
	}
	if slices.Contains(u.Groups, "system:unauthenticated") {
		return schemas.Principal{Type: schemas.PrincipalUnauthenticated}
	}
	return schemas.Principal{Type: schemas.PrincipalHuman}
}

// authCheckResources are the APIs that ask the apiserver whether a
// credential or an action is valid, rather than change anything.
var authCheckResources = map[string]bool{
	"authentication.k8s.io/tokenreviews":                   true,
	"authentication.k8s.io/selfsubjectreviews":             true,
	"authorization.k8s.io/subjectaccessreviews":            true,
	"authorization.k8s.io/selfsubjectaccessreviews":        true,
	"authorization.k8s.io/localsubjectaccessreviews":       true,
	"authorization.k8s.io/selfsubjectrulesreviews":         true,
	"authorization.k8s.io/subjectaccessreviews/status":     true,
	"authorization.k8s.io/selfsubjectaccessreviews/status": true,
}

// Operation classifies the request.
func Operation(ev *schemas.Event) string {
	ref := ev.ObjectRef
	if ref == nil || ref.Resource == "" {
		return schemas.OperationOther // non-resource requests: /healthz, /metrics, discovery
	}
	// Some converters (GKE's) spell the core group "core".
	if (ref.APIGroup == "" || ref.APIGroup == "core") && ref.Resource == "pods" {
		switch ref.Subresource {
		case "exec", "attach", "portforward":
			return schemas.OperationExec
		}
	}
	key := ref.APIGroup + "/" + ref.Resource
	if ref.Subresource != "" {
		key += "/" + ref.Subresource
	}
	if authCheckResources[key] || authCheckResources[ref.APIGroup+"/"+ref.Resource] {
		return schemas.OperationAuthCheck
	}
	class := verbClass(ev.Verb)
	if ref.APIGroup == "rbac.authorization.k8s.io" && (class == schemas.OperationWrite || class == schemas.OperationDelete ||
		ev.Verb == "bind" || ev.Verb == "escalate") {
		return schemas.OperationRBAC
	}
	return class
}

func verbClass(verb string) string {
	switch verb {
	case "get", "list", "watch":
		return schemas.OperationRead
	case "create", "update", "patch", "apply":
		return schemas.OperationWrite
	case "delete", "deletecollection":
		return schemas.OperationDelete
	}
	return schemas.OperationOther
}

// Outcome says how the request ended. The authorizer's decision wins:
// a forbidden request is denied even if a webhook rewrote the code.
func Outcome(ev *schemas.Event) string {
	if ev.Annotations[DecisionAnnotation] == "forbid" {
		return schemas.OutcomeDenied
	}
	if ev.Stage == "Panic" {
		return schemas.OutcomeFailed
	}
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code == 0 {
		return schemas.OutcomeUnknown
	}
	switch c := ev.ResponseStatus.Code; {
	case c == 401 || c == 403:
		return schemas.OutcomeDenied
	case c >= 400:
		return schemas.OutcomeFailed
	}
	return schemas.OutcomeSuccess
}

// LatencyMs is the time from receipt to this stage, in milliseconds
// rounded to microseconds.
func LatencyMs(ev *schemas.Event) (float64, bool) {
	if ev.RequestReceivedTimestamp.IsZero() || ev.StageTimestamp.IsZero() {
		return 0, false
	}
	d := ev.StageTimestamp.Sub(ev.RequestReceivedTimestamp)
	if d < 0 {
		return 0, false
	}
	return math.Round(float64(d.Microseconds())) / 1000, true
}

// sharedAddressSpace is RFC 6598's carrier-grade NAT range, used inside
// many clouds' VPCs (TKE's pod and service ranges among them).
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// IPType classifies a source IP.
func IPType(s string) string {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return schemas.SourceIPInvalid
	}
	ip = ip.Unmap()
	switch {
	case ip.IsLoopback():
		return schemas.SourceIPLoopback
	case ip.IsLinkLocalUnicast():
		return schemas.SourceIPLinkLocal
	case ip.IsPrivate() || sharedAddressSpace.Contains(ip):
		return schemas.SourceIPPrivate
	}
	return schemas.SourceIPPublic
}

// Cluster converts a registry entry; nil when the cluster is not in the
// registry.
func Cluster(c fleet.Cluster, known bool) *schemas.ClusterInfo {
	if !known {
		return nil
	}
	return &schemas.ClusterInfo{DisplayName: c.DisplayName, Region: c.Region, Environment: c.Environment, Owner: c.Owner}
}
