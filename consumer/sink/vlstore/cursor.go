package vlstore

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// Cursors. The ephemeral SQLite store's cursor is its keyset (stage_ts,
// cluster, auditID, stage, and its own row id for the ties between copies
// under a reused auditID); the row id means nothing in the next call's
// ephemeral store, which numbers other candidates. So Search hands out its
// own cursor, the same keyset with the event's stable tie-break (the
// reused marker and a hash of the event) in place of the row id, and
// translates it to the next ephemeral store's row id: the candidates are
// inserted in the result order, so the row ids follow it.
//
// sqliteCursor mirrors consumer/sink/local's keyset (search.go) and its
// encoding (base64url JSON): TestSearchCursorAcrossWrites and the
// differential tests fail if they part.
type sqliteCursor struct {
	TS      *int64 `json:"t"`
	Cluster string `json:"c"`
	AuditID string `json:"a"`
	Stage   string `json:"s"`
	ID      int64  `json:"i"`
}

// cursor is vlstore's cursor: the position of the last event of a page.
type cursor struct {
	TS      *int64 `json:"t"`
	Cluster string `json:"c"`
	AuditID string `json:"a"`
	Stage   string `json:"s"`
	Reused  bool   `json:"r,omitempty"`
	Tie     string `json:"h"`
}

func encodeJSON(v any) string {
	b, _ := json.Marshal(v) // strings, integers and booleans: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeJSON(s string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v) == nil
}

func badCursor() error {
	return &eventstore.InvalidSearchError{Param: "cursor", Msg: "not a cursor returned by this API"}
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	if !decodeJSON(s, &c) || c.Cluster == "" || c.AuditID == "" || c.Stage == "" || c.Tie == "" {
		return cursor{}, badCursor()
	}
	return c, nil
}

// key is the cursor as an event's position, for compareStored.
func (c cursor) key() storedEvent {
	k := storedEvent{cluster: c.Cluster, auditID: c.AuditID, stage: c.Stage, reused: c.Reused, tie: c.Tie}
	if c.TS != nil {
		k.hasTS, k.ms = true, *c.TS
	}
	return k
}

// cursorOf is the cursor after e.
func cursorOf(e *storedEvent) string {
	c := cursor{Cluster: e.cluster, AuditID: e.auditID, Stage: e.stage, Reused: e.reused, Tie: e.tie}
	if e.hasTS {
		ms := e.ms
		c.TS = &ms
	}
	return encodeJSON(c)
}

// ephemeralIDs maps the sorted candidates to the row ids the ephemeral
// store gave them: consecutive from 1 in insertion order, skipping the
// values its Write refused (refused, sorted indexes). 0 for a refused one.
func ephemeralIDs(n int, refused []int) []int64 {
	ids := make([]int64, n)
	next := int64(1)
	for i := range ids {
		if len(refused) > 0 && refused[0] == i {
			refused = refused[1:]
			continue
		}
		ids[i] = next
		next++
	}
	return ids
}

// toSQLite translates c to the ephemeral store's cursor: same keyset, and
// the row id of the last candidate at or before c's event in the result
// order (0 when none is), so that the page starts right after it.
func (c cursor) toSQLite(cands []storedEvent, ids []int64) string {
	k := c.key()
	n, _ := slices.BinarySearchFunc(cands, &k, func(e storedEvent, k *storedEvent) int { return compareStored(&e, k) })
	// n is the first candidate after k, or k itself: include it.
	if n < len(cands) && compareStored(&cands[n], &k) == 0 {
		n++
	}
	var id int64
	for i := n - 1; i >= 0; i-- {
		if ids[i] != 0 {
			id = ids[i]
			break
		}
	}
	return encodeJSON(sqliteCursor{TS: c.TS, Cluster: c.Cluster, AuditID: c.AuditID, Stage: c.Stage, ID: id})
}

// fromSQLite translates the ephemeral store's cursor to vlstore's, "" for
// "".
func fromSQLite(s string, cands []storedEvent, ids []int64) (string, error) {
	if s == "" {
		return "", nil
	}
	var sc sqliteCursor
	if !decodeJSON(s, &sc) {
		return "", badCursor()
	}
	i := slices.Index(ids, sc.ID)
	if i < 0 || sc.ID == 0 {
		return "", badCursor()
	}
	e := &cands[i]
	return encodeJSON(cursor{TS: sc.TS, Cluster: e.cluster, AuditID: e.auditID, Stage: e.stage, Reused: e.reused, Tie: e.tie}), nil
}
