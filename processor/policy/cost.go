package policy

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/auditpipe/auditpipe/processor/internal/eventfile"
	"github.com/auditpipe/auditpipe/schemas"
)

// RuleCost is what one rule of a policy did to a set of events: the price
// of the rule before the policy is deployed.
type RuleCost struct {
	// Rule is the rule's index, or NoRule for events no rule matched.
	Rule int
	// Level is the rule's level.
	Level string
	// Events is how many events the rule matched; Dropped how many of
	// them it dropped (level None or an omitted stage).
	Events, Dropped int
	// BytesBefore is the size of the matched events as recorded;
	// BytesAfter their size after the policy (0 for dropped events).
	BytesBefore, BytesAfter int64
}

// Cost runs the policy over the audit events in r and returns one entry
// per rule (in policy order, rules that matched nothing included) and a
// last entry for events no rule matched. r holds JSON lines of events (an
// apiserver audit log), or one event or EventList per line or as the
// whole input. Errors name the line.
func (p *Policy) Cost(r io.Reader) ([]RuleCost, error) {
	costs := make([]RuleCost, len(p.rules)+1)
	for i := range p.rules {
		costs[i] = RuleCost{Rule: i, Level: string(p.rules[i].Level)}
	}
	costs[len(p.rules)] = RuleCost{Rule: NoRule, Level: LevelNone}
	add := func(raw []byte, where string) error {
		var ev schemas.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		d, err := p.Apply(&ev)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		c := &costs[len(p.rules)]
		if d.Rule != NoRule {
			c = &costs[d.Rule]
		}
		c.Events++
		c.BytesBefore += int64(len(raw))
		if d.Drop {
			c.Dropped++
			return nil
		}
		out, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("%s: encode: %w", where, err)
		}
		c.BytesAfter += int64(len(out))
		return nil
	}
	if err := eventfile.Each(r, add); err != nil {
		return nil, err
	}
	return costs, nil
}
