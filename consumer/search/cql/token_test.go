package cql

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The expected words follow CLS's "Segment and Index" documentation: the
// default delimiters split, '-', '.', '_' and other punctuation do not, and
// the default index is case-insensitive.
func TestWords(t *testing.T) {
	require.Equal(t, []string{"nginx-deployment"}, Words("nginx-deployment"))
	require.Equal(t, []string{"system", "serviceaccount", "kube-system", "default"}, Words("system:serviceaccount:kube-system:default"))
	require.Equal(t, []string{"spec", "unschedulable", "true"}, Words(`{"spec":{"unschedulable":true}}`))
	require.Equal(t, []string{"rbac.authorization.k8s.io"}, Words("rbac.authorization.k8s.io"))
	require.Equal(t, []string{"user-1", "example.com"}, Words("User-1@Example.com"))
	require.Equal(t, []string{"a_b", "c!d#e", "f"}, Words("a_b c!d#e\tf"))
	require.Equal(t, []string{"api", "v1", "pods?watch", "true"}, Words("/api/v1/pods?watch=true"))
	require.Empty(t, Words(" :/()"))
	require.Equal(t, Words("a B:c"), AppendWords(nil, "a B:c"))
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		value, pattern string
		phrase, want   bool
	}{
		{"nginx", "nginx", false, true},
		{"nginx-deployment", "nginx", false, false}, // '-' does not split
		{"nginx-deployment", "NGINX-Deployment", false, true},
		{"nginx-deployment", "nginx*", false, true},
		{"nginx-deployment", "ng*ment", false, true},
		{"nginx-deployment", "ngin?", false, false},
		{"nginx", "ngin?", false, true},
		{"nginy", "ngin?", false, true},
		{"ngin", "ngin?", false, false},
		{"über", "?ber", false, true}, // '?' is one character, not one byte
		{"a*b", `a\*b`, false, true},
		{"axb", `a\*b`, false, false},
		{"a?b", `a\?b`, false, true},
		// Unquoted value with delimiters: its words joined by OR.
		{"system:admin", "system:nobody", false, true},
		{"bob", "system:admin", false, false},
		{"kube-system", "system:kube-system", false, true},
		// Quoted: a phrase, words adjacent and in order.
		{"system:serviceaccount:kube-system:default", "kube-system:default", true, true},
		{"system:serviceaccount:kube-system:default", "serviceaccount:default", true, false},
		{"system:serviceaccount:kube-system:default", "default:kube-system", true, false},
		{`{"spec":{"unschedulable":true}}`, "unschedulable", false, true},
		{"", "x", false, false},
		{"::", "::", false, false}, // no words: nothing to find
		{"aXbXc", "a*c*c", false, false},
		{"abcbc", "a*bc", false, true},
	}
	for _, tt := range tests {
		p := CompilePattern(tt.pattern, tt.phrase)
		require.Equal(t, tt.want, p.Match(Words(tt.value)), "value %q pattern %q phrase %v", tt.value, tt.pattern, tt.phrase)
	}
}

func TestGlobPrefix(t *testing.T) {
	for _, tt := range []struct {
		text       string
		wild       bool
		prefix     string
		prefixOnly bool
	}{
		{"kube*", true, "kube", true},
		{"ku?e*", true, "ku", false},
		{"ng*x", true, "ng", false},
		{`a\*b*`, true, "a*b", true},
		{"nginx", false, "nginx", false},
	} {
		g := Glob{Text: tt.text, Wild: tt.wild}
		require.Equal(t, tt.prefix, g.Prefix(), tt.text)
		require.Equal(t, tt.prefixOnly, g.PrefixOnly(), tt.text)
	}
}
