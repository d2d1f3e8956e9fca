package local

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

func TestTokenMatch(t *testing.T) {
	tests := []struct {
		value   string
		parts   []string
		matches bool
	}{
		{"nginx-deployment", []string{"nginx"}, true},
		{"nginx-deployment", []string{"deployment"}, true},
		{"nginx-deployment", []string{"nginx-deployment"}, true},
		{"nginx-deployment", []string{"NGINX"}, true}, // case-insensitive
		{"nginx-deployment", []string{"ngin"}, false}, // whole tokens
		{"nginx-deployment", []string{"deployment nginx"}, false},
		{"nginx-deployment", []string{"ngin", ""}, true}, // ngin*
		{"nginx-deployment", []string{"ng", "x"}, true},  // ng*x
		{"nginx-deployment", []string{"ng", "y"}, false},
		{"nginx-deployment", []string{"nginx-dep", ""}, true}, // nginx-dep*
		{"vanilla-nginx-deployment", []string{"nginx-deployment"}, true},
		{"system:serviceaccount:kube-system:default", []string{"kube-system:default"}, true},
		{"system:serviceaccount:kube-system:default", []string{"serviceaccount:default"}, false},
		{`{"spec":{"unschedulable":true}}`, []string{"unschedulable"}, true},
		{`{"spec":{"unschedulable":true}}`, []string{"spec unschedulable true"}, true},
		{"a*b", []string{"a*b"}, true}, // a literal * (quoted) separates tokens
		{"---", []string{"---"}, true}, // no tokens: exact comparison
		{"--", []string{"---"}, false},
		{"", []string{"x"}, false},
		{"Ärger über", []string{"über"}, true},
		{"a1b2", []string{"a", "2"}, true},
		{"abc", []string{"a", "b", "c"}, true}, // a*b*c
		{"ab", []string{"a", "b", "c"}, false},
		{"aXbXc", []string{"a", "c", "c"}, false},
	}
	for _, tt := range tests {
		got := tokenMatch(tt.value, encodePattern(tt.parts))
		require.Equal(t, tt.matches, got, "value %q pattern %q", tt.value, tt.parts)
	}
}

func TestFTSQuery(t *testing.T) {
	tests := []struct {
		parts []string
		query string
		exact bool
	}{
		{[]string{"nginx"}, `"nginx"`, true},
		{[]string{`say "hi"`}, `"say ""hi"""`, true},
		{[]string{"kube", ""}, `"kube"*`, true},
		{[]string{"ng", "x"}, `"ng"*`, false},
		{[]string{"nginx-dep", ""}, `"nginx" AND "dep"*`, false},
		{[]string{"---"}, "", false},
		{[]string{"-", ""}, "", false},
	}
	for _, tt := range tests {
		q, exact := ftsQuery(tt.parts)
		require.Equal(t, tt.query, q, "%q", tt.parts)
		require.Equal(t, tt.exact, exact, "%q", tt.parts)
	}
}

func TestJSONPath(t *testing.T) {
	require.Equal(t, `$."requestObject"."spec"."replicas"`, jsonPath("requestObject.spec.replicas"))
	require.Equal(t, `$."annotations"."authorization.k8s.io/decision"`, jsonPath("annotations.authorization.k8s.io/decision"))
	require.Equal(t, `$."auditpipe"."principal"."type"`, jsonPath("auditpipe.principal.type"))
}

func TestGlobPattern(t *testing.T) {
	require.Equal(t, "kube-*", globPattern([]string{"kube-", ""}))
	require.Equal(t, "a[*]b*c[?][[]", globPattern([]string{"a*b", "c?["}))
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
}
