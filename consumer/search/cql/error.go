package cql

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Error is a query error at a position. Its message names the byte offset
// and ends with the query and a caret under the offending character:
//
//	position 9: expected a value after "verb:"
//	  verb:get AND
//	               ^
type Error struct {
	Query string
	Pos   int // byte offset into Query
	Msg   string
}

// Errorf returns an *Error at pos of query.
func Errorf(query string, pos int, format string, args ...any) *Error {
	return &Error{Query: query, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return fmt.Sprintf("position %d: %s\n%s", e.Pos, e.Msg, e.Caret())
}

// Caret renders the query on one line (control characters shown as spaces,
// so the columns stay aligned) and a caret line under Pos, each indented by
// two spaces.
func (e *Error) Caret() string {
	pos := min(max(e.Pos, 0), len(e.Query))
	line := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, e.Query)
	// The caret column counts characters, not bytes, so it stays under
	// the right character after non-ASCII text. A pos inside a rune
	// (impossible from the parser, possible from callers) rounds down.
	col := utf8.RuneCountInString(strings.ToValidUTF8(e.Query[:pos], "\uFFFD"))
	return "  " + line + "\n  " + strings.Repeat(" ", col) + "^"
}
