package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local/localtest"
)

// TestStoreMigrate: `consumer store migrate` copies a SQLite store into a
// VictoriaLogs one that the consumer then opens with every event; a
// second run stores nothing; bad invocations say what is wrong.
func TestStoreMigrate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	from, to := filepath.Join(dir, "events.db"), filepath.Join(dir, "vlogs")
	src, err := app.OpenStore(app.LocalConfig{Engine: eventstore.EngineSQLite, Path: from}, eventstore.Options{})
	require.NoError(t, err)
	values := localtest.Values(localtest.Raw(localtest.All(t)))
	_, err = src.Write(ctx, values)
	require.NoError(t, err)
	require.NoError(t, src.Close())

	var out, errOut bytes.Buffer
	require.NoError(t, program().Run(ctx, []string{"store", "migrate", "--from", from, "--to", to, "--batch", "50"}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), fmt.Sprintf("migrated %d events", len(values)))
	require.Contains(t, out.String(), fmt.Sprintf("%d stored, 0 already there", len(values)))
	require.Contains(t, errOut.String(), "resume with --after")

	out.Reset()
	require.NoError(t, program().Run(ctx, []string{"store", "migrate", "--from", from, "--to", to}, &out, &errOut))
	require.Contains(t, out.String(), fmt.Sprintf("0 stored, %d already there", len(values)))

	dst, err := app.OpenStore(app.LocalConfig{Engine: eventstore.EngineVictoriaLogs, Path: to}, eventstore.Options{})
	require.NoError(t, err)
	res, err := dst.Query(ctx, eventstore.Query{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, len(values), res.Total)
	require.NoError(t, dst.Close())

	for want, args := range map[string][]string{
		"--from and --to are required":  {"store", "migrate", "--from", from},
		"no such file":                  {"store", "migrate", "--from", filepath.Join(dir, "nope.db"), "--to", to},
		"same store":                    {"store", "migrate", "--from", from, "--to", from},
		"only sqlite":                   {"store", "migrate", "--from", to, "--from-engine", "vlogs", "--to", from},
		"--batch: want":                 {"store", "migrate", "--from", from, "--to", to, "--batch", "0"},
		`"rocks", want sqlite or vlogs`: {"store", "migrate", "--from", from, "--to", to + "2", "--to-engine", "rocks"},
	} {
		err := program().Run(ctx, args, &out, &errOut)
		require.ErrorContains(t, err, want)
	}
}
