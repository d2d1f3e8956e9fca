package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/cli"
)

// TestReplayCommand: "processor replay" is registered; its help is on
// stdout and a bad flag is an error, not printed.
func TestReplayCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, program().Run(t.Context(), []string{"replay", "--help"}, &out, &errOut))
	require.Contains(t, out.String(), "Usage: processor replay [flags]")
	require.Contains(t, out.String(), "--target cls")
	require.Contains(t, out.String(), "-kafka-brokers")
	require.Empty(t, errOut.String())

	out.Reset()
	require.ErrorIs(t, program().Run(t.Context(), []string{"help"}, &out, &errOut), cli.ErrHelp)
	require.Regexp(t, `(?m)^\s+replay\s+re-process`, out.String(), "listed in the help")

	require.ErrorContains(t, program().Run(t.Context(), []string{"replay", "--frob"}, &out, &errOut), "frob")
	require.Empty(t, errOut.String())
}
