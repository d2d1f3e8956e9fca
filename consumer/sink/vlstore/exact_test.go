package vlstore

import (
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// TestLowerPreimage: each class is exactly the runes that lower-case to
// its ASCII letter (so the regexps match what CLS's lower-casing makes
// equal, no more, no less).
func TestLowerPreimage(t *testing.T) {
	want := map[rune][]rune{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if l := unicode.ToLower(r); l >= 'a' && l <= 'z' {
			want[l] = append(want[l], r)
		}
	}
	for c := byte('a'); c <= 'z'; c++ {
		class := lowerPreimage(c)
		require.True(t, strings.HasPrefix(class, "[") && strings.HasSuffix(class, "]"), class)
		require.ElementsMatch(t, want[rune(c)], []rune(class[1:len(class)-1]), "%q", c)
	}
}

func TestExactLogsQL(t *testing.T) {
	for q, exact := range map[string]bool{
		`*`: true, `verb:DELETE`: true, `verb:(get OR list) AND NOT objectRef.resource:pods`: true,
		`user.username:kube-sys*`: true, `auditpipe.cluster:c1`: true,
		`forbidden`: false, `verb:"get"`: false, `user.username:system:kube`: false, `objectRef.name:a*b`: false,
		`responseStatus.code:403`: false, `responseStatus.code>=400`: false, `objectRef.namespace:*`: false,
		`objectRef.namespace:""`: false, `annotations.x:y`: false, `verb:get AND forbidden`: false, `verb:é`: false,
	} {
		parsed, err := cql.Parse(q)
		require.NoError(t, err, q)
		_, ok := exactLogsQL(parsed.Filter)
		require.Equal(t, exact, ok, q)
	}
}
