// Package policy applies a Kubernetes audit.k8s.io/v1 Policy to events that
// an apiserver has already recorded. Rule matching is done by the
// apiserver's own evaluator (k8s.io/apiserver/pkg/audit/policy), so a
// policy behaves here exactly as it would in kube-apiserver; this package
// only adds what a downstream stage needs on top: a strict loader, the
// mapping from a recorded event to authorizer attributes, and a decision
// that can drop an event or lower its level but never raise it.
package policy

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/auditpipe/auditpipe/schemas"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	audit "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditpkg "k8s.io/apiserver/pkg/audit"
	k8spolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// Audit levels, as spelled in events and policies.
const (
	LevelNone            = string(audit.LevelNone)
	LevelMetadata        = string(audit.LevelMetadata)
	LevelRequest         = string(audit.LevelRequest)
	LevelRequestResponse = string(audit.LevelRequestResponse)
)

// DropReason says why an event was dropped.
type DropReason string

// Reasons for dropping an event.
const (
	// DropLevelNone: the matching rule (or the default when no rule
	// matched) has level None, or the event itself says None.
	DropLevelNone DropReason = "level None"
	// DropOmitStage: the event's stage is in the policy's or the rule's
	// omitStages.
	DropOmitStage DropReason = "stage omitted"
)

// NoRule is Decision.Rule when no rule matched and the policy default
// (level None) applied.
const NoRule = -1

// Decision is what the policy does with one event.
type Decision struct {
	// Drop is true when the event must not be kept; Reason says why.
	Drop   bool
	Reason DropReason
	// Level is the level the kept event ends up with: the lower of the
	// event's own level and PolicyLevel. Empty when Drop is true.
	Level string
	// PolicyLevel is the level of the matching rule.
	PolicyLevel string
	// OmitManagedFields is the rule's (or the policy's) omitManagedFields.
	OmitManagedFields bool
	// Rule is the index of the matching rule in the policy file, or
	// NoRule.
	Rule int
}

// Policy is a loaded and validated audit policy. It is immutable and safe
// for concurrent use.
type Policy struct {
	name  string
	rules []audit.PolicyRule
	// eval is the apiserver's evaluator over a copy of the policy whose
	// rule levels are replaced by markers (see markerLevel), so one
	// evaluation tells which rule matched; the real level is then read
	// from rules. This is how we learn the rule index without
	// re-implementing the matching.
	eval auditpkg.PolicyRuleEvaluator
}

// LoadFile reads and strictly decodes the policy file at path.
func LoadFile(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return Load(path, data)
}

// Load strictly decodes an audit.k8s.io/v1 Policy in YAML or JSON. name
// (usually the file name) is used in errors and returned by Name.
//
// The apiserver's loader falls back to lenient decoding (and only logs a
// warning) when a policy has unknown or duplicate fields; a typo such as
// "omitStage" would then silently change what is recorded. We therefore
// decode strictly into the v1 type first and refuse such a policy.
func Load(name string, data []byte) (*Policy, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("load policy %s: empty", name)
	}
	// The apiserver's own strict decoder reports every unknown or
	// duplicate field with its path, e.g. unknown field "rules[3].verb".
	strict := serializer.NewCodecFactory(auditpkg.Scheme, serializer.EnableStrict).UniversalDecoder(auditv1.SchemeGroupVersion)
	if _, _, err := strict.Decode(data, nil, &audit.Policy{}); err != nil {
		return nil, fmt.Errorf("load policy %s: %w", name, err)
	}
	internal, err := k8spolicy.LoadPolicyFromBytes(data)
	if err != nil {
		// Validation errors name the field, e.g. rules[3].level.
		return nil, fmt.Errorf("load policy %s: %w", name, err)
	}
	return newPolicy(name, internal), nil
}

func newPolicy(name string, p *audit.Policy) *Policy {
	// NewPolicyRuleEvaluator writes the union of the policy's and each
	// rule's omitStages into the rules it is given, so it gets its own
	// copy.
	marked := p.DeepCopy()
	for i := range marked.Rules {
		marked.Rules[i].Level = markerLevel(i)
	}
	return &Policy{
		name:  name,
		rules: p.DeepCopy().Rules,
		eval:  k8spolicy.NewPolicyRuleEvaluator(marked),
	}
}

const markerPrefix = "auditpipe-rule-"

func markerLevel(i int) audit.Level { return audit.Level(markerPrefix + strconv.Itoa(i)) }

func ruleIndex(l audit.Level) int {
	s, ok := strings.CutPrefix(string(l), markerPrefix)
	if !ok {
		return NoRule
	}
	i, err := strconv.Atoi(s)
	if err != nil {
		return NoRule
	}
	return i
}

// Name returns the name the policy was loaded under.
func (p *Policy) Name() string { return p.name }

// Rules returns the number of rules.
func (p *Policy) Rules() int { return len(p.rules) }

// Decide evaluates the policy for ev without changing it. It fails only
// when the event's level is not a known audit level, because then we
// cannot tell whether a level would be raised.
func (p *Policy) Decide(ev *schemas.Event) (Decision, error) {
	evLevel := audit.Level(ev.Level)
	if !validLevel(evLevel) {
		return Decision{}, fmt.Errorf("event level %q is not an audit level", ev.Level)
	}
	cfg := p.eval.EvaluatePolicyRule(Attributes(ev))
	d := Decision{Rule: ruleIndex(cfg.Level), OmitManagedFields: cfg.OmitManagedFields}
	policyLevel := audit.LevelNone // the apiserver's default when no rule matches
	if d.Rule != NoRule {
		policyLevel = p.rules[d.Rule].Level
	}
	d.PolicyLevel = string(policyLevel)
	level := lower(evLevel, policyLevel)
	switch {
	case level == audit.LevelNone:
		d.Drop, d.Reason = true, DropLevelNone
	case slices.Contains(cfg.OmitStages, audit.Stage(ev.Stage)):
		d.Drop, d.Reason = true, DropOmitStage
	default:
		d.Level = string(level)
	}
	return d, nil
}

// Apply decides and, when the event is kept, lowers it in place: it sets
// the level, strips bodies the level does not include and, when the rule
// says so, removes metadata.managedFields from the remaining bodies. The
// event is untouched when it is dropped or on error.
func (p *Policy) Apply(ev *schemas.Event) (Decision, error) {
	d, err := p.Decide(ev)
	if err != nil || d.Drop {
		return d, err
	}
	req, resp := ev.RequestObject, ev.ResponseObject
	switch audit.Level(d.Level) {
	case audit.LevelMetadata:
		req, resp = nil, nil
	case audit.LevelRequest:
		resp = nil
	}
	if d.OmitManagedFields {
		if req, err = WithoutManagedFields(req); err != nil {
			return d, fmt.Errorf("requestObject: %w", err)
		}
		if resp, err = WithoutManagedFields(resp); err != nil {
			return d, fmt.Errorf("responseObject: %w", err)
		}
	}
	ev.Level, ev.RequestObject, ev.ResponseObject = d.Level, req, resp
	return d, nil
}

// Attributes maps a recorded event to the attributes the apiserver's
// evaluator matched when it recorded the event.
func Attributes(ev *schemas.Event) authorizer.AttributesRecord {
	a := authorizer.AttributesRecord{
		User: &user.DefaultInfo{
			Name:   ev.User.Username,
			UID:    ev.User.UID,
			Groups: ev.User.Groups,
			Extra:  ev.User.Extra,
		},
		Verb: ev.Verb,
		Path: requestPath(ev.RequestURI),
	}
	if r := ev.ObjectRef; r != nil {
		a.ResourceRequest = true
		a.Namespace = r.Namespace
		a.APIGroup = r.APIGroup
		a.APIVersion = r.APIVersion
		a.Resource = r.Resource
		a.Subresource = r.Subresource
		a.Name = r.Name
	}
	return a
}

// requestPath drops the query (e.g. ?timeout=32s, ?watch=true) because
// the apiserver matches nonResourceURLs against the path only.
func requestPath(uri string) string {
	if u, err := url.ParseRequestURI(uri); err == nil {
		return u.Path
	}
	path, _, _ := strings.Cut(uri, "?")
	return path
}

func validLevel(l audit.Level) bool {
	switch l {
	case audit.LevelNone, audit.LevelMetadata, audit.LevelRequest, audit.LevelRequestResponse:
		return true
	}
	return false
}

// lower returns the lower of two valid levels.
func lower(a, b audit.Level) audit.Level {
	if a.Less(b) {
		return a
	}
	return b
}
