package detect

import (
	pathpkg "path"
	"strings"

	"github.com/auditpipe/auditpipe/processor/enrich"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// Variables of the CEL environment. The names are the audit event's own
// top-level keys, so a condition reads like the JSON it tests; principal
// and auditpipe are what auditpipe adds.
const (
	varVerb             = "verb"
	varStage            = "stage"
	varLevel            = "level"
	varAuditID          = "auditID"
	varRequestURI       = "requestURI"
	varUserAgent        = "userAgent"
	varUser             = "user"
	varImpersonatedUser = "impersonatedUser"
	varSourceIPs        = "sourceIPs"
	varObjectRef        = "objectRef"
	varResponseStatus   = "responseStatus"
	varAnnotations      = "annotations"
	varRequestObject    = "requestObject"
	varResponseObject   = "responseObject"
	varPrincipal        = "principal"
	varAuditpipe        = "auditpipe"
)

// newEnv returns the CEL environment conditions compile in.
func newEnv() (*cel.Env, error) {
	str, dynMap, strMap := cel.StringType, cel.MapType(cel.StringType, cel.DynType), cel.MapType(cel.StringType, cel.StringType)
	dynList := cel.ListType(cel.DynType)
	return cel.NewEnv(
		cel.OptionalTypes(),
		cel.Variable(varVerb, str),
		cel.Variable(varStage, str),
		cel.Variable(varLevel, str),
		cel.Variable(varAuditID, str),
		cel.Variable(varRequestURI, str),
		cel.Variable(varUserAgent, str),
		cel.Variable(varUser, dynMap),
		cel.Variable(varImpersonatedUser, dynMap),
		cel.Variable(varSourceIPs, cel.ListType(str)),
		cel.Variable(varObjectRef, strMap),
		cel.Variable(varResponseStatus, dynMap),
		cel.Variable(varAnnotations, strMap),
		cel.Variable(varRequestObject, cel.DynType),
		cel.Variable(varResponseObject, cel.DynType),
		cel.Variable(varPrincipal, strMap),
		cel.Variable(varAuditpipe, dynMap),
		cel.Function("containers", cel.Overload("containers_dyn", []*cel.Type{cel.DynType}, dynList,
			cel.UnaryBinding(func(v ref.Val) ref.Val { return listOf(containers(v)) }))),
		cel.Function("containerFields", cel.Overload("containerFields_dyn_string", []*cel.Type{cel.DynType, str}, dynList,
			cel.BinaryBinding(func(v, p ref.Val) ref.Val {
				path, _ := p.Value().(string)
				return listOf(containerFields(v, path))
			}))),
		cel.Function("podSpec", cel.Overload("podSpec_dyn", []*cel.Type{cel.DynType}, dynMap,
			cel.UnaryBinding(func(v ref.Val) ref.Val { return mapOf(podSpec(v)) }))),
		cel.Function("volumes", cel.Overload("volumes_dyn", []*cel.Type{cel.DynType}, dynList,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				spec, err := podSpec(v)
				if err != nil {
					return types.WrapErr(err)
				}
				vols, err := field(spec, "volumes")
				if err != nil {
					return types.WrapErr(err)
				}
				return listOf(items(vols))
			}))),
		cel.Function("roleRules", cel.Overload("roleRules_dyn", []*cel.Type{cel.DynType}, dynList,
			cel.UnaryBinding(func(v ref.Val) ref.Val { return listAt(v, "rules") }))),
		cel.Function("roleRef", cel.Overload("roleRef_dyn", []*cel.Type{cel.DynType}, dynMap,
			cel.UnaryBinding(func(v ref.Val) ref.Val { return mapOf(field(v, "roleRef")) }))),
		cel.Function("subjects", cel.Overload("subjects_dyn", []*cel.Type{cel.DynType}, dynList,
			cel.UnaryBinding(func(v ref.Val) ref.Val { return listAt(v, "subjects") }))),
		cel.Function("pathUnder", cel.Overload("pathUnder_string_list", []*cel.Type{str, cel.ListType(str)}, cel.BoolType,
			cel.BinaryBinding(pathUnder))),
		cel.Function("uriPath", cel.Overload("uriPath_string", []*cel.Type{str}, str,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				s, _ := v.Value().(string)
				p, _, _ := strings.Cut(s, "?")
				return types.String(p)
			}))),
	)
}

// object returns v as a lazy object, or an empty one when it is not an
// object (absent, null, another type), so helpers never fail on shape;
// they fail only on malformed bytes.
func object(v any) *lazyObject {
	if o, ok := v.(*lazyObject); ok {
		return o
	}
	return emptyObject()
}

// field returns member key of object v (nil when absent or when v is
// not an object).
func field(v any, key string) (any, error) {
	o, ok := v.(*lazyObject)
	if !ok {
		return nil, nil
	}
	f, err := o.lookup(key)
	if err != nil || f == nil {
		return nil, err
	}
	return f, nil
}

// items returns the elements of v, or none when it is not an array. The
// caller must not modify them.
func items(v any) ([]ref.Val, error) {
	a, ok := v.(*lazyList)
	if !ok {
		return nil, nil
	}
	if _, err := a.expand(); err != nil {
		return nil, err
	}
	return a.items, nil
}

// path follows keys from v.
func path(v any, keys ...string) (any, error) {
	var err error
	for _, k := range keys {
		if v, err = field(v, k); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// podSpec returns the pod spec in a body: a Pod's spec, the pod template
// of a workload (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
// ReplicationController) or of a CronJob, or the spec of a patch of
// pods/ephemeralcontainers.
func podSpec(v any) (*lazyObject, error) {
	spec, err := field(v, "spec")
	if err != nil {
		return nil, err
	}
	if t, err := field(spec, "template"); err != nil {
		return nil, err
	} else if _, ok := t.(*lazyObject); ok {
		s, err := field(t, "spec")
		return object(s), err
	}
	if jt, err := field(spec, "jobTemplate"); err != nil {
		return nil, err
	} else if _, ok := jt.(*lazyObject); ok {
		s, err := path(jt, "spec", "template", "spec")
		return object(s), err
	}
	return object(spec), nil
}

// containers returns every container of the pod spec in a body:
// containers, initContainers and ephemeralContainers.
func containers(v any) ([]ref.Val, error) {
	spec, err := podSpec(v)
	if err != nil {
		return nil, err
	}
	var out []ref.Val
	for _, key := range []string{"containers", "initContainers", "ephemeralContainers"} {
		f, err := field(spec, key)
		if err != nil {
			return nil, err
		}
		cs, err := items(f)
		if err != nil {
			return nil, err
		}
		out = append(out, cs...)
	}
	return out, nil
}

// listOf and mapOf turn a helper's result into a CEL value.
// containerFields returns, for every container of the pod spec in a body
// (as containers does), the value at the dotted path, skipping containers
// without it: `true in containerFields(requestObject,
// "securityContext.privileged")` asks what
// `containers(requestObject).exists(c, c.?securityContext.?privileged ==
// optional.of(true))` asks, without a CEL step per container.
func containerFields(v any, dotted string) ([]ref.Val, error) {
	cs, err := containers(v)
	if err != nil {
		return nil, err
	}
	keys := strings.Split(dotted, ".")
	var out []ref.Val
	for _, c := range cs {
		f, err := path(c, keys...)
		if err != nil {
			return nil, err
		}
		if rv, ok := f.(ref.Val); ok && rv != nil {
			out = append(out, rv)
		}
	}
	return out, nil
}

// listAt returns the array under key of object v.
func listAt(v any, key string) ref.Val {
	f, err := field(v, key)
	if err != nil {
		return types.WrapErr(err)
	}
	return listOf(items(f))
}

func listOf(elems []ref.Val, err error) ref.Val {
	if err != nil {
		return types.WrapErr(err)
	}
	return types.NewRefValList(types.DefaultTypeAdapter, elems)
}

func mapOf(v any, err error) ref.Val {
	if err != nil {
		return types.WrapErr(err)
	}
	return object(v)
}

// pathUnder reports whether a hostPath is one of dirs or below one of
// them. "/" matches only the root itself, else it would match every path.
func pathUnder(p, dirs ref.Val) ref.Val {
	s, ok := p.Value().(string)
	if !ok || s == "" {
		return types.False
	}
	s = pathpkg.Clean(s)
	l, ok := dirs.(traits.Lister)
	if !ok {
		return types.False
	}
	for it := l.Iterator(); it.HasNext() == types.True; {
		d, ok := it.Next().Value().(string)
		if !ok || d == "" {
			continue
		}
		d = pathpkg.Clean(d)
		if s == d || (d != "/" && strings.HasPrefix(s, d+"/")) {
			return types.True
		}
	}
	return types.False
}

// activation resolves the variables of one event, each built on first use
// and kept for the other rules of the same event.
type activation struct {
	ev       *schemas.Event
	pl       *schemas.Pipeline
	resolved map[string]any
}

var _ interpreter.Activation = (*activation)(nil)

func newActivation(ev *schemas.Event, pl *schemas.Pipeline) *activation {
	return &activation{ev: ev, pl: pl}
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) ResolveName(name string) (any, bool) {
	if v, ok := a.resolved[name]; ok {
		return v, true
	}
	v, ok := a.build(name)
	if !ok {
		return nil, false
	}
	if a.resolved == nil {
		a.resolved = make(map[string]any, 8)
	}
	a.resolved[name] = v
	return v, true
}

func (a *activation) build(name string) (any, bool) {
	ev := a.ev
	switch name {
	case varVerb:
		return ev.Verb, true
	case varStage:
		return ev.Stage, true
	case varLevel:
		return ev.Level, true
	case varAuditID:
		return ev.AuditID, true
	case varRequestURI:
		return ev.RequestURI, true
	case varUserAgent:
		return ev.UserAgent, true
	case varUser:
		return userMap(ev.User), true
	case varImpersonatedUser:
		if ev.ImpersonatedUser == nil {
			return map[string]any{}, true
		}
		return userMap(*ev.ImpersonatedUser), true
	case varSourceIPs:
		if ev.SourceIPs == nil {
			return []string{}, true
		}
		return ev.SourceIPs, true
	case varObjectRef:
		var r schemas.ObjectReference
		if ev.ObjectRef != nil {
			r = *ev.ObjectRef
		}
		return map[string]string{"resource": r.Resource, "namespace": r.Namespace, "name": r.Name, "uid": r.UID,
			"apiGroup": r.APIGroup, "apiVersion": r.APIVersion, "resourceVersion": r.ResourceVersion, "subresource": r.Subresource}, true
	case varResponseStatus:
		var s schemas.Status
		if ev.ResponseStatus != nil {
			s = *ev.ResponseStatus
		}
		return map[string]any{"code": int64(s.Code), "status": s.Status, "reason": s.Reason, "message": s.Message}, true
	case varAnnotations:
		if ev.Annotations == nil {
			return map[string]string{}, true
		}
		return ev.Annotations, true
	case varRequestObject:
		return body(ev.RequestObject), true
	case varResponseObject:
		return body(ev.ResponseObject), true
	case varPrincipal:
		p := enrich.ClassifyUser(ev.User)
		return map[string]string{"type": p.Type, "namespace": p.Namespace, "name": p.Name}, true
	case varAuditpipe:
		var pl schemas.Pipeline
		if a.pl != nil {
			pl = *a.pl
		}
		return map[string]any{"cluster": pl.Cluster, "source": pl.Source, "auditIDReused": pl.AuditIDReused}, true
	}
	return nil, false
}

func userMap(u schemas.UserInfo) map[string]any {
	groups := u.Groups
	if groups == nil {
		groups = []string{}
	}
	extra := u.Extra
	if extra == nil {
		extra = map[string][]string{}
	}
	return map[string]any{"username": u.Username, "uid": u.UID, "groups": groups, "extra": extra}
}

// body is what a rule sees of a request or response body: a lazy value,
// or an empty object when the event has none (level Metadata, or null).
func body(raw []byte) any {
	if len(raw) == 0 {
		return emptyObject()
	}
	v, err := root(raw)
	if err != nil {
		return types.NewErr("body: %v", err)
	}
	if v == nil {
		return emptyObject()
	}
	return v
}
