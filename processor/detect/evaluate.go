package detect

import (
	"fmt"
	"slices"
	"strings"

	"github.com/auditpipe/auditpipe/schemas"
	"github.com/google/cel-go/common/types"
)

// RuleError is a rule that could not be evaluated on an event (a body of
// an unexpected shape, a malformed body). The rule does not match.
type RuleError struct {
	Rule string
	Err  error
}

func (e RuleError) Error() string { return fmt.Sprintf("rule %s: %v", e.Rule, e.Err) }

// Evaluate returns the enabled rules ev matches, in rule order, and the
// rules that failed on it. pl carries what auditpipe knows beyond the
// event (cluster, source, the auditID reuse marker) and may be nil. ev is
// not modified.
func (s *Set) Evaluate(ev *schemas.Event, pl *schemas.Pipeline) ([]*Rule, []RuleError) {
	if s == nil || ev == nil {
		return nil, nil
	}
	stage := uint8(0)
	if k := slices.Index(stages, ev.Stage); k >= 0 {
		stage = 1 << k
	}
	f := facts{ev: ev, pl: pl}
	var act *activation
	var matches []*Rule
	var errs []RuleError
	for _, r := range s.rules {
		if !r.Enabled || r.stageMask&stage == 0 || !r.pass(&f) || r.excepted(ev) {
			continue
		}
		if act == nil {
			act = newActivation(ev, pl)
		}
		out, _, err := r.prg.Eval(act)
		if err != nil {
			errs = append(errs, RuleError{Rule: r.ID, Err: err})
			continue
		}
		if out == types.True {
			matches = append(matches, r)
		}
	}
	return matches, errs
}

// excepted reports whether one of the rule's exceptions covers ev.
func (r *Rule) excepted(ev *schemas.Event) bool {
	if slices.Contains(r.Users, ev.User.Username) {
		return true
	}
	if ev.ObjectRef != nil && ev.ObjectRef.Namespace != "" && slices.Contains(r.Namespaces, ev.ObjectRef.Namespace) {
		return true
	}
	if len(r.ServiceAccounts) > 0 {
		rest, ok := strings.CutPrefix(ev.User.Username, "system:serviceaccount:")
		if ns, name, ok2 := strings.Cut(rest, ":"); ok && ok2 {
			for _, sa := range r.ServiceAccounts {
				ens, ename, _ := strings.Cut(sa, "/")
				if ens == ns && (ename == "*" || ename == name) {
					return true
				}
			}
		}
	}
	return false
}
