package jsonbytes

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Normalized is the result of Normalize.
type Normalized struct {
	// Value is the normalized object: the input itself when nothing had
	// to change, else a new slice.
	Value []byte
	// Members are the top-level members of Value, in order.
	Members []Member
	// Removed counts the members removed because a later member of the
	// same object had the same key.
	Removed int
	// Cut holds the JSON Pointers (RFC 6901) of the containers replaced
	// because they were nested too deep, in document order.
	Cut []string
}

// Normalize validates b, which must hold one JSON object, and makes it
// read the same to every JSON reader:
//
//   - Repeated keys: in every object, of the members whose keys are equal
//     once unescaped ("data", "d\u0061ta"), only the last is kept, the way
//     encoding/json and the apiserver's decoder read them. Readers that
//     take the first (SQLite's json_extract) or that look at bytes would
//     otherwise see another value than the one a Go reader saw.
//   - Depth: an object or array that would sit deeper than maxDepth
//     levels (the top-level object is level 1) is replaced with cut, a
//     non-empty JSON value, and its JSON Pointer is reported in
//     Normalized.Cut.
//
// Every other byte is kept as it is: key and string forms, numbers,
// whitespace. members is a buffer for Normalized.Members (may be nil).
// It returns ErrNotObject when b holds another valid value.
func Normalize(b []byte, maxDepth int, cut []byte, members []Member) (Normalized, error) {
	// The key stack is reused across calls: the processor normalizes
	// every event, and a fresh stack was a sixth of its allocated bytes.
	kp := keysPool.Get().(*[]keyEntry)
	n := normalizer{b: b, maxDepth: maxDepth, cut: cut, top: members[:0], keys: (*kp)[:0]}
	defer func() {
		if cap(n.keys) <= 4096 {
			*kp = n.keys[:0]
			keysPool.Put(kp)
		}
	}()
	i := skipWS(b, 0)
	if i >= len(b) {
		return Normalized{}, syntaxErr(i, "unexpected end of JSON input")
	}
	if b[i] != '{' {
		end, err := skip(b, i, 0)
		if err != nil {
			return Normalized{}, err
		}
		if j := skipWS(b, end); j != len(b) {
			return Normalized{}, syntaxErr(j, "invalid character %q after top-level value", b[j])
		}
		return Normalized{}, ErrNotObject
	}
	end, err := n.object(i, 0)
	if err != nil {
		return Normalized{}, err
	}
	if n.cuts > 0 {
		// Pointers are built only for events that have cuts: scan
		// again, keeping the path this time.
		n = normalizer{b: b, maxDepth: maxDepth, cut: cut, top: members[:0], keys: n.keys[:0], track: true}
		if end, err = n.object(i, 0); err != nil {
			return Normalized{}, err
		}
	}
	if j := skipWS(b, end); j != len(b) {
		return Normalized{}, syntaxErr(j, "invalid character %q after top-level value", b[j])
	}
	return n.apply(), nil
}

// keysPool holds key stacks with room for the members of the open
// objects of a typical event.
var keysPool = sync.Pool{New: func() any { s := make([]keyEntry, 0, 48); return &s }}

// edit replaces b[from:to] with repl (nil for a removed member, the cut
// value for a cut). Edits are either disjoint or nested.
type edit struct {
	from, to int
	repl     []byte
	pointer  string // set for cuts
}

// keyEntry is a member of an object being scanned. It holds offsets, not
// slices: entries are written for every member, and pointer-free ones
// cost no GC write barriers.
type keyEntry struct {
	key   keyRef
	start int  // where the member's key begins
	gone  bool // removed as an earlier duplicate
}

// keyRef is a key without its quotes: b[from:to] when esc < 0, else the
// unescaped key n.unescaped[esc].
type keyRef struct {
	from, to, esc int
}

// segment is one step of the path to the value being scanned: a key, or
// an array index when index >= 0.
type segment struct {
	key   keyRef
	index int
}

// bigObject is the member count from which duplicates are found with a
// map rather than by comparing with every earlier key.
const bigObject = 32

type normalizer struct {
	b         []byte
	maxDepth  int
	cut       []byte
	edits     []edit
	keys      []keyEntry // stack: the members of every open object
	path      []segment
	unescaped [][]byte // keys that hold escapes, unescaped
	track     bool     // keep path, for the pointers of cuts
	cuts      int
	top       []Member
	removed   int
}

// value scans the value at b[i] at the given depth (0: top level).
func (n *normalizer) value(i, depth int) (int, error) {
	if i >= len(n.b) {
		return 0, syntaxErr(i, "unexpected end of JSON input")
	}
	c := n.b[i]
	if c != '{' && c != '[' {
		return skip(n.b, i, depth)
	}
	if depth >= n.maxDepth {
		end, err := skip(n.b, i, depth)
		if err != nil {
			return 0, err
		}
		e := edit{from: i, to: end, repl: n.cut}
		if n.track {
			e.pointer = n.pointer()
		}
		n.edits = append(n.edits, e)
		n.cuts++
		return end, nil
	}
	if c == '{' {
		return n.object(i, depth)
	}
	return n.array(i, depth)
}

func (n *normalizer) array(i, depth int) (int, error) {
	if depth >= maxDepth {
		return 0, syntaxErr(i, "exceeded max depth")
	}
	b := n.b
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for idx := 0; ; idx++ {
		if n.track {
			n.path = append(n.path, segment{index: idx})
		}
		end, err := n.value(i, depth+1)
		if n.track {
			n.path = n.path[:len(n.path)-1]
		}
		if err != nil {
			return 0, err
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return 0, syntaxErr(i, "invalid character %q after array element", b[i])
		}
	}
}

func (n *normalizer) object(i, depth int) (int, error) {
	if depth >= maxDepth {
		return 0, syntaxErr(i, "exceeded max depth")
	}
	b := n.b
	base := len(n.keys)
	var big map[string]int // key -> index in n.keys, for large objects
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		if b[i] != '"' {
			return 0, syntaxErr(i, "invalid character %q looking for beginning of object key string", b[i])
		}
		start := i
		end, escaped, err := str(b, i)
		if err != nil {
			return 0, err
		}
		ref := keyRef{from: i + 1, to: end - 1, esc: -1}
		if escaped {
			ref.esc = len(n.unescaped)
			n.unescaped = append(n.unescaped, unescape(b[i:end]))
		}
		key := n.keyBytes(ref)
		i = skipWS(b, end)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		if b[i] != ':' {
			return 0, syntaxErr(i, "invalid character %q after object key", b[i])
		}
		vs := skipWS(b, i+1)
		if n.track {
			n.path = append(n.path, segment{key: ref, index: -1})
		}
		ve, err := n.value(vs, depth+1)
		if n.track {
			n.path = n.path[:len(n.path)-1]
		}
		if err != nil {
			return 0, err
		}
		dup := -1
		if big != nil {
			if j, ok := big[string(key)]; ok {
				dup = j
			}
		} else {
			for j := base; j < len(n.keys); j++ {
				if !n.keys[j].gone && bytes.Equal(n.keyBytes(n.keys[j].key), key) {
					dup = j
					break
				}
			}
		}
		if dup >= 0 {
			// The earlier member goes, from its key to the next
			// member's key, so its comma goes with it.
			next := start
			if dup+1 < len(n.keys) {
				next = n.keys[dup+1].start
			}
			n.keys[dup].gone = true
			n.edits = append(n.edits, edit{from: n.keys[dup].start, to: next})
			n.removed++
		}
		n.keys = append(n.keys, keyEntry{key: ref, start: start})
		switch {
		case big != nil:
			big[string(key)] = len(n.keys) - 1
		case len(n.keys)-base > bigObject:
			big = make(map[string]int, 2*bigObject)
			for j := base; j < len(n.keys); j++ {
				if !n.keys[j].gone {
					big[string(n.keyBytes(n.keys[j].key))] = j
				}
			}
		}
		if depth == 0 {
			n.top = append(n.top, Member{Key: b[start+1 : end-1], KeyEscaped: escaped, Start: start, ValueStart: vs, ValueEnd: ve})
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return 0, syntaxErr(i, "unexpected end of JSON input")
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			if depth == 0 {
				n.dropRemovedTop(base)
			}
			n.keys = n.keys[:base]
			return i + 1, nil
		default:
			return 0, syntaxErr(i, "invalid character %q after object key:value pair", b[i])
		}
	}
}

// dropRemovedTop removes the top-level members that were duplicates; the
// top-level object's entries start at base in n.keys, in the same order
// as n.top.
func (n *normalizer) dropRemovedTop(base int) {
	if n.removed == 0 {
		return
	}
	kept := n.top[:0]
	for j, m := range n.top {
		if !n.keys[base+j].gone {
			kept = append(kept, m)
		}
	}
	n.top = kept
}

func (n *normalizer) keyBytes(r keyRef) []byte {
	if r.esc >= 0 {
		return n.unescaped[r.esc]
	}
	return n.b[r.from:r.to]
}

// unescape decodes a JSON string (with its quotes) that holds escapes.
func unescape(quoted []byte) []byte {
	s, ok := Unescape(quoted[1 : len(quoted)-1])
	if !ok {
		return quoted // validated by str already; keep something unique
	}
	return []byte(s)
}

// pointer is the JSON Pointer of the value being scanned.
func (n *normalizer) pointer() string {
	var sb strings.Builder
	for _, s := range n.path {
		sb.WriteByte('/')
		if s.index >= 0 {
			sb.WriteString(strconv.Itoa(s.index))
			continue
		}
		sb.WriteString(strings.ReplaceAll(strings.ReplaceAll(string(n.keyBytes(s.key)), "~", "~0"), "/", "~1"))
	}
	return sb.String()
}

// apply builds the output from the edits, and moves the top-level
// members to their offsets in it.
func (n *normalizer) apply() Normalized {
	if len(n.edits) == 0 {
		return Normalized{Value: n.b, Members: n.top}
	}
	slices.SortFunc(n.edits, func(a, b edit) int {
		if a.from != b.from {
			return a.from - b.from
		}
		return b.to - a.to // the enclosing edit first
	})
	res := Normalized{Removed: n.removed}
	out := make([]byte, 0, len(n.b))
	applied := n.edits[:0]
	last := 0
	for _, e := range n.edits {
		if e.from < last {
			continue // inside an edit already applied (a removed member)
		}
		out = append(out, n.b[last:e.from]...)
		out = append(out, e.repl...)
		last = e.to
		if e.repl != nil {
			res.Cut = append(res.Cut, e.pointer)
		}
		applied = append(applied, e)
	}
	out = append(out, n.b[last:]...)
	// A kept member's offsets are never inside an applied edit: shift
	// each by what the edits before it added or removed.
	shift := func(p int) int {
		d := 0
		for _, e := range applied {
			if e.to > p {
				break
			}
			d += len(e.repl) - (e.to - e.from)
		}
		return p + d
	}
	for i, m := range n.top {
		s := shift(m.Start)
		m.Key = out[s+1 : s+1+len(m.Key)]
		m.Start, m.ValueStart, m.ValueEnd = s, shift(m.ValueStart), shift(m.ValueEnd)
		n.top[i] = m
	}
	res.Value, res.Members = out, n.top
	return res
}
