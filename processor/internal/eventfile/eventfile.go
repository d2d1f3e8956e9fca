// Package eventfile reads recorded audit events the way the processor's
// offline tools take them (`processor policy test`, `processor rules
// test`): an apiserver audit log of JSON lines, one event or EventList
// per line, or one EventList or pretty-printed event as the whole input.
package eventfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Each calls fn with every event in r and where it was found ("line 3",
// "items[2]", "line 3: items[2]"), for errors that name the place. It
// stops at the first error fn returns.
func Each(r io.Reader, fn func(raw []byte, where string) error) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	// A whole-input EventList (or pretty-printed event) first.
	if list, ok := eventList(data); ok {
		for i, item := range list {
			if err := fn(item, fmt.Sprintf("items[%d]", i)); err != nil {
				return err
			}
		}
		return nil
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
				if err := fn(item, fmt.Sprintf("%s: items[%d]", where, i)); err != nil {
					return err
				}
			}
			continue
		}
		if err := fn(b, where); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
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
