package detect

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/auditpipe/auditpipe/processor/internal/eventfile"
	"github.com/auditpipe/auditpipe/schemas"
)

// RuleTally is what one rule matched in a replay of recorded events.
type RuleTally struct {
	Rule    *Rule
	Matches int
	Errors  int
	// Examples are up to MaxExamples matched events, as "where: verb
	// resource/name by user (auditID)".
	Examples []string
}

// MaxExamples caps RuleTally.Examples.
const MaxExamples = 3

// Tally runs the enabled rules over recorded events and counts matches
// per rule: how a rule would have behaved on history, before it is
// deployed. r holds apiserver audit events (an audit log of JSON lines,
// EventList or event JSON) or processed events, whose auditpipe key
// supplies the cluster and the auditID reuse marker. It returns a tally
// per rule in rule order and the number of events read.
func (s *Set) Tally(r io.Reader) ([]RuleTally, int, error) {
	tallies := make([]RuleTally, len(s.rules))
	index := map[string]int{}
	for i, rule := range s.rules {
		tallies[i].Rule = rule
		index[rule.ID] = i
	}
	events := 0
	add := func(raw []byte, where string) error {
		var ev struct {
			schemas.Event
			Pipeline *schemas.Pipeline `json:"auditpipe"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		events++
		matches, errs := s.Evaluate(&ev.Event, ev.Pipeline)
		for _, e := range errs {
			tallies[index[e.Rule]].Errors++
		}
		for _, m := range matches {
			t := &tallies[index[m.ID]]
			t.Matches++
			if len(t.Examples) < MaxExamples {
				t.Examples = append(t.Examples, example(where, &ev.Event))
			}
		}
		return nil
	}
	if err := eventfile.Each(r, add); err != nil {
		return nil, 0, err
	}
	return tallies, events, nil
}

func example(where string, ev *schemas.Event) string {
	obj := ev.RequestURI
	if r := ev.ObjectRef; r != nil && r.Resource != "" {
		obj = r.Resource
		if r.Subresource != "" {
			obj += "/" + r.Subresource
		}
		if r.Namespace != "" {
			obj = r.Namespace + "/" + obj
		}
		if r.Name != "" {
			obj += "/" + r.Name
		}
	}
	return fmt.Sprintf("%s: %s %s by %s (%s)", where, ev.Verb, obj, ev.User.Username, ev.AuditID)
}
