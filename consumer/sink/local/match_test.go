package local

import (
	"context"
	"hash/fnv"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

func TestFTSQuery(t *testing.T) {
	enc := ftsWord
	tests := []struct {
		pattern string
		phrase  bool
		query   string
		exact   bool
	}{
		{"nginx", false, `text : ("nginx")`, true},
		{"NGINX-dep", false, `text : ("` + enc("nginx-dep") + `")`, true},
		{"kube*", false, `text : ("kube"*)`, true},
		{"ng*x", false, `text : ("ng"*)`, false},
		{"ngin?", false, `text : ("ngin"*)`, false},
		{"system:admin", false, `text : ("system" OR "admin")`, true},
		{"cannot list", true, `text : "cannot list"`, true},
		{"::", false, "", false},
	}
	for _, tt := range tests {
		q, exact := ftsQuery("text", "", cql.CompilePattern(tt.pattern, tt.phrase))
		require.Equal(t, tt.query, q, tt.pattern)
		require.Equal(t, tt.exact, exact, tt.pattern)
	}
	// A key's words carry its tag; a wildcard without a prefix falls back
	// to "the key is present".
	tag := keyTag("auditpipe.source")
	q, exact := ftsQuery("kv", tag, cql.CompilePattern("webhook", false))
	require.Equal(t, `kv : ("`+tag+`webhook")`, q)
	require.True(t, exact)
	require.Len(t, tag, keyTagLen)
	require.NotEqual(t, tag, keyTag("auditpipe.Source"))
}

func TestFTSWordIsAPrefixCode(t *testing.T) {
	require.Equal(t, "nginxz2ddeployment", ftsWord("nginx-deployment"))
	require.Equal(t, "z7a", ftsWord("z"))
	require.Equal(t, "zc3zbcber", ftsWord("über"))
	// A prefix of a word encodes to a prefix of its encoding, and an
	// encoded prefix only extends to encodings of extensions.
	for _, w := range []string{"kube-system", "z-zz", "über-x", "a.b_c"} {
		for i := range len(w) + 1 {
			require.True(t, strings.HasPrefix(ftsWord(w), ftsWord(w[:i])), "%q %d", w, i)
		}
	}
}

// TestSearchIndexes checks that the search's indexes exist and that the
// planner uses them: the text-field match walks (name, stage_ts), and a
// full-text condition with a time range filters the events_time range.
func TestSearchIndexes(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	plan := func(query string, timeRange bool) string {
		t.Helper()
		q, err := cql.Parse(query)
		require.NoError(t, err)
		c := &compiler{q: q, timeRange: timeRange}
		where, err := c.filter(q.Filter)
		require.NoError(t, err)
		if timeRange {
			where += " AND stage_ts >= " + c.arg(int64(0)) + " AND stage_ts < " + c.arg(int64(1))
		}
		tx, err := s.readers.Begin()
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		require.NoError(t, resolveLookups(context.Background(), tx, c.args))
		require.NoError(t, resolveIDBounds(context.Background(), tx, c.args, time.UnixMilli(0), time.UnixMilli(1)))
		rows, err := tx.Query("EXPLAIN QUERY PLAN SELECT event FROM events WHERE "+where+" ORDER BY stage_ts DESC, cluster, audit_id, stage LIMIT 10", c.args...)
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			out = append(out, detail)
		}
		require.NoError(t, rows.Err())
		return strings.Join(out, "\n")
	}
	require.Contains(t, plan(`objectRef.name:nginx`, true), "events_name_ts (name=?")
	require.Contains(t, plan(`userAgent:kubectl`, true), "events_user_agent_ts (user_agent=?")
	require.Contains(t, plan(`user.username:bob`, true), "events_username_ts (username=?")
	require.Contains(t, plan(`forbidden`, true), "events_time (stage_ts>? AND stage_ts<?)")
	require.Contains(t, plan(`forbidden`, false), "INTEGER PRIMARY KEY (rowid=?)")
	// A keyword next to a JSON-path condition, with a time range: the
	// range narrows first (verb and time, or cluster and time), never a
	// scan of the fleet.
	for _, q := range []string{
		`verb:delete AND annotations.authorization.k8s.io/decision:forbid`,
		`verb:delete AND auditpipe.cluster:c1 AND requestObject:privileged`,
		`annotations.authorization.k8s.io/decision:forbid`,
	} {
		p := plan(q, true)
		require.NotRegexp(t, `(?m)^SCAN events$`, p, q)
		require.Regexp(t, `stage_ts>\? AND stage_ts<\?`, p, q)
	}

	// An analysis over columns reads the narrow events_facets index, with
	// or without a time range.
	analysisPlan := func(query string, timeRange bool) string {
		t.Helper()
		q, err := cql.Parse(query)
		require.NoError(t, err)
		c := &compiler{q: q, timeRange: timeRange}
		where, err := c.filter(q.Filter)
		require.NoError(t, err)
		conds := []string{where}
		if timeRange {
			conds = append(conds, "stage_ts >= "+c.arg(int64(0)), "stage_ts < "+c.arg(int64(1)))
		}
		stmt, args, _, err := analysisStatement(c, conds, q.SQL)
		require.NoError(t, err)
		tx, err := s.readers.Begin()
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		require.NoError(t, resolveIDBounds(context.Background(), tx, args, time.UnixMilli(0), time.UnixMilli(1)))
		rows, err := tx.Query("EXPLAIN QUERY PLAN "+stmt, args...)
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
			out = append(out, detail)
		}
		return strings.Join(out, "\n")
	}
	codes := `* | SELECT verb, "responseStatus.code" AS code, count(*) AS n GROUP BY verb, code ORDER BY n DESC`
	require.Contains(t, analysisPlan(codes, false), "COVERING INDEX events_facets")
	require.Contains(t, analysisPlan(codes, true), "COVERING INDEX events_facets (stage_ts>? AND stage_ts<?)")
}

// indexWords writes, byte by byte, the same words the queries encode from
// cql.Words: the index and the queries must never disagree on a word.
func TestIndexWordsAreCLSWords(t *testing.T) {
	doc := []byte(`{"a":"Nginx-Deployment über:ÄRGER","b":["x","Y"],"auditpipe":{"source":"webhook"},"c":403}`)
	text, kv, err := indexWords(doc, nil, nil)
	require.NoError(t, err)
	var want []string
	for _, v := range []string{"Nginx-Deployment über:ÄRGER", `["x","Y"]`, "403"} {
		for _, w := range cql.Words(v) {
			want = append(want, ftsWord(w))
		}
		want = append(want, valueBreak)
	}
	require.Equal(t, want, strings.Fields(string(text)))
	require.Contains(t, strings.Fields(string(kv)), keyTag("auditpipe.source")+"webhook")
	require.NotContains(t, string(text), "webhook")
}

func TestKeyTagIsFNV1a(t *testing.T) {
	h := fnv.New64a()
	_, _ = h.Write([]byte("auditpipe.source"))
	sum := h.Sum64()
	var want [keyTagLen]byte
	for i := range want {
		want[i] = 'a' + byte(sum&15)
		sum >>= 4
	}
	require.Equal(t, string(want[:]), keyTag("auditpipe.source"))
}
