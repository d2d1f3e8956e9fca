package flatten

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzUnescape: the walker's escaped strings (jsonbytes.Unescape) are
// what encoding/json makes of them.
func FuzzUnescape(f *testing.F) {
	for _, c := range []string{`a\"b`, `\u0026\u003c`, `\ud83d\ude00`, `\ud83dx`, "ok\xc3\xa9\\t", `\uzzzz`} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if !utf8.ValidString(body) {
			// Callers validate UTF-8 first (the store refuses such
			// events); unescaped strings are passed through as they are.
			return
		}
		raw := []byte(`"` + body + `"`)
		var want string
		wantErr := json.Unmarshal(raw, &want)
		// Only what the walker hands over: bodies of strings it scanned
		// (no raw quote or control character; escapes kept whole).
		w := walker{data: raw}
		s, err := w.str()
		if w.pos != len(raw) {
			return // the body ends the string early: not one string
		}
		if wantErr != nil {
			require.Error(t, err, "%q", body)
			return
		}
		require.NoError(t, err, "%q", body)
		require.Equal(t, want, s, "%q", body)
	})
}
