package jsonbytes_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/jsonbytes"
)

// unescapeCases are string bodies with escapes, valid and not, that
// encoding/json decodes in its own ways (replacement runes for lone
// surrogates and invalid UTF-8).
var unescapeCases = []string{
	`a\"b`, `\\`, `\/`, `\b\f\n\r\t`, `\u0026\u003c\u003e`, `x\u00e9y`, `\u00E9`,
	`\ud83d\ude00`, `\ud83d`, `\ud83dx`, `\ude00`, `\ud83d\u0041`, `\ud83d\ud83d\ude00`,
	`caf\u00e9 \u4e2d`, "\xff\\n", "ok\xc3\xa9\\t", "\xed\xa0\x80\\n",
	`\u12`, `\x41`, `\`, `\uzzzz`, `\u00e`,
}

func TestUnescapeMatchesEncodingJSON(t *testing.T) {
	for _, body := range unescapeCases {
		var want string
		wantErr := json.Unmarshal([]byte(`"`+body+`"`), &want)
		got, ok := jsonbytes.Unescape([]byte(body))
		if wantErr != nil {
			require.False(t, ok, "%q: encoding/json refuses it (%v)", body, wantErr)
			continue
		}
		require.True(t, ok, "%q", body)
		require.Equal(t, want, got, "%q", body)
	}
}
