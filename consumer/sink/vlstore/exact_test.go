package vlstore

import (
	"math/rand/v2"
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
		`forbidden`: true, `verb:"get"`: true, `user.username:system:kube`: true, `objectRef.name:a*b`: false,
		`user.username:"system:kube-scheduler"`: true, `objectRef.name:"app-1.config_3"`: true,
		`responseStatus.code:403`: true, `responseStatus.code>=400`: true, `NOT responseStatus.code=404`: true,
		`responseStatus.code:40*`: false, `responseStatus.code:*`: false, `objectRef.namespace:*`: false,
		`objectRef.namespace:""`: false, `annotations.x:y`: true, `verb:get AND forbidden`: true, `FORB*`: true, `"forbid den"`: true, `NOT forbidden`: true,
		`for*den`: false, `é`: false, `forbidden OR é`: false, `verb:é`: false,
		`annotations.authorization.k8s.io/decision:forbid`: true, `user.groups:"system:masters"`: true,
		`annotations.x:y*`: true, `annotations.x:"a b*"`: true, `annotations.x:*`: false, `annotations.x>1`: false,
		`stageTimestamp:2026*`: false, `__TIMESTAMP__:1`: false, `_msg:x`: false, `verb:"::"`: false,
	} {
		parsed, err := cql.Parse(q)
		require.NoError(t, err, q)
		_, ok := exactLogsQL(parsed.Filter, true)
		require.Equal(t, exact, ok, q)
	}
}

func TestPlanGroupCount(t *testing.T) {
	for q, native := range map[string]bool{
		`* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY n DESC, verb`:                                                                        true,
		`* | SELECT "objectRef.namespace" AS ns, count(*) AS n GROUP BY ns ORDER BY ns`:                                                             true,
		`* | SELECT count(*) AS n, "user.username" GROUP BY "user.username" ORDER BY "user.username" DESC`:                                          true,
		`* | SELECT verb, count(*) AS n GROUP BY verb ORDER BY n DESC`:                                                                              true, // SQLite's tie order
		`* | SELECT verb, count(*) AS n GROUP BY verb`:                                                                                              true,
		`* | SELECT verb, count(*) AS n GROUP BY 1 ORDER BY 2 DESC`:                                                                                 true,
		`* | SELECT "responseStatus.code" AS c, count(*) GROUP BY c ORDER BY c`:                                                                     true,
		`* | SELECT "annotations.a/b" AS c, count(*) GROUP BY c ORDER BY c`:                                                                         true,
		`* | SELECT histogram(cast(__TIMESTAMP__ as timestamp), interval 1 minute) AS t, COUNT(1) AS n, userAgent GROUP BY t, userAgent ORDER BY t`: true,
		`* | SELECT date_trunc('hour', __TIMESTAMP__) AS t, count(*) AS n, count(verb) GROUP BY t`:                                                  true,
		`* | SELECT verb, count(*), count(*) AS m GROUP BY verb ORDER BY verb`:                                                                      true,
		`* | SELECT histogram(__TIMESTAMP__, interval 1 minute) AS t, date_trunc('hour', __TIMESTAMP__) AS h, count(*) GROUP BY t, h`:               false,
		`* | SELECT verb, count(*) AS n WHERE verb = 'get' GROUP BY verb ORDER BY verb`:                                                             true,
		`* | SELECT verb, count(*) AS n WHERE verb LIKE 'g%' GROUP BY verb`:                                                                         false,
		`* | SELECT verb, count(*) AS n WHERE "objectRef.namespace" = '' GROUP BY verb`:                                                             false,
		`* | SELECT verb, count(*) AS n WHERE "annotations.x" = 'a' GROUP BY verb`:                                                                  false,
		`* | SELECT verb, count(*) AS n WHERE "responseStatus.code" = '403' GROUP BY verb`:                                                          false,
		`* | SELECT verb, count_if(verb > 'a') GROUP BY verb`:                                                                                       false,
		`* | SELECT verb, sum("responseStatus.code") GROUP BY verb ORDER BY verb`:                                                                   false,
		`* | SELECT verb, count("annotations.x") GROUP BY verb ORDER BY verb`:                                                                       false,
		`* | SELECT DISTINCT verb, count(*) GROUP BY verb ORDER BY verb`:                                                                            false,
		`* | SELECT verb, "user.username", count(*) GROUP BY verb ORDER BY verb`:                                                                    false, // a bare column
		`* | SELECT verb, count(*) GROUP BY verb ORDER BY count(*)`:                                                                                 false,
		`* | SELECT verb, count(*) GROUP BY verb HAVING count(*) > 1`:                                                                               true,
		`* | SELECT verb, count(*) AS n GROUP BY verb HAVING n > 1 AND verb = 'get'`:                                                                false,
		`* | SELECT verb, count(*) AS n GROUP BY verb HAVING NOT n > 1`:                                                                             false,
		`* | SELECT verb AS v, count(*) AS n GROUP BY v HAVING v > 1`:                                                                               false,
		`* | SELECT count(*)`: false,
	} {
		parsed, err := cql.Parse(q)
		require.NoError(t, err, q)
		_, ok := planGroupCount(parsed.SQL)
		require.Equal(t, native, ok, q)
	}
}

func TestCaseFreeFilter(t *testing.T) {
	for _, tc := range []struct {
		word   string
		prefix bool
		want   string
	}{
		{"id-00042", false, `f:"00042" `},
		{"10.0.3.17", false, `f:"10" `},
		{"v1.30.2", false, `f:"30" `},
		{"kube-system", false, ""},
		{"app_2", false, ""},          // one token with letters
		{"12-34567", true, `f:"12" `}, // the last token may continue in the value
		{"2020", true, ""},
		{"é42", false, ""},
	} {
		require.Equal(t, tc.want, caseFreeFilter("f", tc.word, tc.prefix), tc.word)
	}
}

// TestAppendLower: the CLS words that lower-casing changes (or may:
// non-ASCII) are appended once per event (as written), lower-cased as
// strings.ToLower does (CLS's words), separated by lowerSeparator; other
// words are not.
func TestAppendLower(t *testing.T) {
	// want is appendLower's result by another route: CLS's words.
	want := func(values ...string) string {
		var out []string
		seen := map[string]bool{}
		for _, v := range values {
			for _, w := range strings.FieldsFunc(v, cql.IsDelimiter) {
				if l := strings.ToLower(w); (l != w || !asciiOnly(w)) && !seen[w] && strings.Trim(w, "0123456789.+-TZtz") != "" {
					seen[w] = true
					out = append(out, l)
				}
			}
		}
		return strings.Join(out, lowerSeparator)
	}
	values := []string{"kube-system", "", "Metadata", "get", `RBAC: allowed by "Admin"`, "\u212Aubectl/v1", "naïve", "ÉTÉ x",
		`{"kind":"Pod","spec":{"dnsPolicy":"ClusterFirst"}}`, "Kube-System.Io/x", "a\nB\tc D", "Pod POD pod Metadata", "2026-12-03T10:00:00.5Z"}
	var b strings.Builder
	seen := map[string]struct{}{}
	for _, v := range values {
		appendLower(&b, v, seen)
	}
	require.Equal(t, want(values...), b.String())
	require.Equal(t, []string{"metadata", "rbac", "admin", "kubectl", "naïve", "été", "pod", "dnspolicy", "clusterfirst", "kube-system.io", "b", "d", "pod"},
		strings.Split(b.String(), lowerSeparator), "Pod once, POD once (the words as written)")

	// Random text over letters of both cases, digits, delimiters and
	// non-ASCII runes, long enough for nextMixed's eight-byte steps to
	// meet every alignment, and with words repeated.
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcxyzABCXYZTtZz019-._+ /:\"{}\n\u00e9\u00c9\u212a\u0130")
	for range 3000 {
		runes := make([]rune, r.IntN(60))
		for i := range runes {
			runes[i] = alphabet[r.IntN(len(alphabet))]
			if r.IntN(3) > 0 {
				runes[i] = rune('a' + r.IntN(3)) // long lower-case runs, words that repeat
			}
		}
		v := string(runes)
		var got strings.Builder
		appendLower(&got, v, map[string]struct{}{})
		require.Equal(t, want(v), got.String(), "%q", v)
	}
}
