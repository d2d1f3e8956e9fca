package detect

import (
	"slices"
	"strconv"

	"github.com/auditpipe/auditpipe/processor/enrich"
	"github.com/auditpipe/auditpipe/schemas"
	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// Most events match no rule, and most rules begin by naming the verb or
// resource they are about. A condition's top-level conjuncts of the form
// `field == "literal"` or `field in ["literal", ...]` over a few plain
// fields are therefore also checked in Go, before CEL runs: an event that
// fails one cannot match, so the rule is skipped for the price of a string
// comparison. This is an index, not a second semantics: CEL still
// evaluates the whole condition on the events that pass.

// prefilter is one conjunct the Go check can decide.
type prefilter struct {
	field  string // one of prefilterFields
	values []string
}

// prefilterFields are the fields a prefilter can read, as written in a
// condition.
var prefilterFields = []string{
	"verb", "stage",
	"objectRef.resource", "objectRef.subresource", "objectRef.apiGroup", "objectRef.namespace",
	"principal.type", "user.username", "auditpipe.auditIDReused",
}

// prefilters returns the conjuncts of ast that a prefilter can decide.
func prefilters(ast *cel.Ast) []prefilter {
	var out []prefilter
	for _, e := range conjuncts(ast.NativeRep().Expr(), nil) {
		if e.Kind() != celast.CallKind {
			continue
		}
		call := e.AsCall()
		args := call.Args()
		if len(args) != 2 {
			continue
		}
		field := fieldPath(args[0])
		if !slices.Contains(prefilterFields, field) {
			continue
		}
		switch call.FunctionName() {
		case operators.Equals:
			if v, ok := literal(args[1]); ok {
				out = append(out, prefilter{field: field, values: []string{v}})
			}
		case operators.In:
			if args[1].Kind() != celast.ListKind {
				continue
			}
			var values []string
			for _, el := range args[1].AsList().Elements() {
				v, ok := literal(el)
				if !ok {
					values = nil
					break
				}
				values = append(values, v)
			}
			if values != nil {
				out = append(out, prefilter{field: field, values: values})
			}
		}
	}
	return out
}

// conjuncts flattens nested `&&`.
func conjuncts(e celast.Expr, out []celast.Expr) []celast.Expr {
	if e.Kind() == celast.CallKind && e.AsCall().FunctionName() == operators.LogicalAnd {
		for _, a := range e.AsCall().Args() {
			out = conjuncts(a, out)
		}
		return out
	}
	return append(out, e)
}

// fieldPath spells an identifier or a one-level selection ("verb",
// "objectRef.resource"), "" for anything else.
func fieldPath(e celast.Expr) string {
	switch e.Kind() {
	case celast.IdentKind:
		return e.AsIdent()
	case celast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() || s.Operand().Kind() != celast.IdentKind {
			return ""
		}
		return s.Operand().AsIdent() + "." + s.FieldName()
	}
	return ""
}

// literal is a string or bool constant as the prefilter compares it.
func literal(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	switch v := e.AsLiteral().(type) {
	case types.String:
		return string(v), true
	case types.Bool:
		return strconv.FormatBool(bool(v)), true
	}
	return "", false
}

// facts are the prefilter fields of one event, read once.
type facts struct {
	ev            *schemas.Event
	pl            *schemas.Pipeline
	principalType string
	classified    bool
}

func (f *facts) get(field string) string {
	ev := f.ev
	ref := ev.ObjectRef
	if ref == nil {
		ref = &schemas.ObjectReference{}
	}
	switch field {
	case "verb":
		return ev.Verb
	case "stage":
		return ev.Stage
	case "objectRef.resource":
		return ref.Resource
	case "objectRef.subresource":
		return ref.Subresource
	case "objectRef.apiGroup":
		return ref.APIGroup
	case "objectRef.namespace":
		return ref.Namespace
	case "user.username":
		return ev.User.Username
	case "principal.type":
		if !f.classified {
			f.principalType = enrich.ClassifyUser(ev.User).Type
			f.classified = true
		}
		return f.principalType
	case "auditpipe.auditIDReused":
		return strconv.FormatBool(f.pl != nil && f.pl.AuditIDReused)
	}
	return ""
}

// pass reports whether every prefilter of r holds for the event.
func (r *Rule) pass(f *facts) bool {
	for _, p := range r.prefilters {
		if !slices.Contains(p.values, f.get(p.field)) {
			return false
		}
	}
	return true
}
