package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

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
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	// A whole-input EventList (or pretty-printed event) first.
	if list, ok := eventList(data); ok {
		for i, item := range list {
			if err := add(item, fmt.Sprintf("items[%d]", i)); err != nil {
				return nil, err
			}
		}
		return costs, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		where := fmt.Sprintf("line %d", line)
		if list, ok := eventList(b); ok {
			for i, item := range list {
				if err := add(item, fmt.Sprintf("%s: items[%d]", where, i)); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := add(b, where); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return costs, nil
}

// eventList returns the items of an EventList, or of a single event when
// data is exactly one JSON value spanning lines.
func eventList(data []byte) ([]json.RawMessage, bool) {
	var probe struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return nil, false
	}
	if probe.Kind == "EventList" {
		return probe.Items, true
	}
	if bytes.Count(bytes.TrimSpace(data), []byte("\n")) > 0 {
		return []json.RawMessage{data}, true // one pretty-printed event
	}
	return nil, false
}
