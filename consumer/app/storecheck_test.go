package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/app"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// TestNoSQLiteStoreUnderVLogs: a vlogs store is refused where an earlier
// version's SQLite store is (local.path itself, <local.path>.db, or
// events.db beside it), by validate and run alike, before anything is
// opened; the error names the file and both ways out. A vlogs store that
// exists, a file that is not SQLite beside it, or engine sqlite pass.
func TestNoSQLiteStoreUnderVLogs(t *testing.T) {
	sqliteStore := func(t *testing.T, path string) {
		t.Helper()
		s, err := local.Open(path, local.Options{})
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	otherFile := func(t *testing.T, path string) {
		t.Helper()
		require.NoError(t, os.WriteFile(path, []byte("not a database\n"), 0o600))
	}
	for name, tc := range map[string]struct {
		engine string
		path   string                         // local.path, under the test's directory
		setup  func(t *testing.T, dir string) // lays out the directory
		want   []string                       // substrings of the error; none: accepted
	}{
		"path is the SQLite store": {
			engine: "vlogs", path: "events.db",
			setup: func(t *testing.T, dir string) { sqliteStore(t, filepath.Join(dir, "events.db")) },
			want: []string{"local.path: {dir}/events.db is a file, probably a SQLite store from an earlier version",
				"set local.engine: sqlite to keep using it", `"consumer store migrate --from {dir}/events.db --to DIR"`},
		},
		"path is another file": {
			engine: "vlogs", path: "store",
			setup: func(t *testing.T, dir string) { otherFile(t, filepath.Join(dir, "store")) },
			want:  []string{"local.path: {dir}/store is a file", "local.engine: sqlite", "consumer store migrate"},
		},
		"the old default beside the new one": {
			engine: "vlogs", path: "auditpipe-events",
			setup: func(t *testing.T, dir string) { sqliteStore(t, filepath.Join(dir, "auditpipe-events.db")) },
			want: []string{"local.path: {dir}/auditpipe-events does not exist but {dir}/auditpipe-events.db does, the SQLite store of an earlier version",
				"set local.engine: sqlite and local.path: {dir}/auditpipe-events.db to keep using it",
				`"consumer store migrate --from {dir}/auditpipe-events.db --to {dir}/auditpipe-events"`},
		},
		"the chart's layout": {
			engine: "vlogs", path: "vlogs",
			setup: func(t *testing.T, dir string) { sqliteStore(t, filepath.Join(dir, "events.db")) },
			want: []string{"local.path: {dir}/vlogs does not exist but {dir}/events.db does",
				`"consumer store migrate --from {dir}/events.db --to {dir}/vlogs"`},
		},
		"migrated: the vlogs store exists": {
			engine: "vlogs", path: "vlogs",
			setup: func(t *testing.T, dir string) {
				sqliteStore(t, filepath.Join(dir, "events.db"))
				require.NoError(t, os.Mkdir(filepath.Join(dir, "vlogs"), 0o700))
			},
		},
		"beside it a file that is not SQLite": {
			engine: "vlogs", path: "vlogs",
			setup: func(t *testing.T, dir string) { otherFile(t, filepath.Join(dir, "events.db")) },
		},
		"nothing there": {engine: "vlogs", path: "vlogs", setup: func(*testing.T, string) {}},
		"engine sqlite keeps its store": {
			engine: "sqlite", path: "events.db",
			setup: func(t *testing.T, dir string) { sqliteStore(t, filepath.Join(dir, "events.db")) },
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			cfg := app.DefaultConfig()
			cfg.Kafka.Brokers = []string{"k:9092"}
			cfg.API.Listen = ""
			cfg.Local.Engine = tc.engine
			cfg.Local.Path = filepath.Join(dir, tc.path)
			before := listDir(t, dir)

			checkErr := app.Check(&cfg)
			a, newErr := app.New(cfg, app.Deps{})
			if len(tc.want) == 0 {
				require.NoError(t, checkErr)
				require.NoError(t, newErr)
				require.NoError(t, a.Close())
				return
			}
			for _, err := range []error{checkErr, newErr} {
				require.Error(t, err)
				for _, w := range tc.want {
					require.Contains(t, err.Error(), strings.ReplaceAll(w, "{dir}", dir))
				}
			}
			require.Equal(t, before, listDir(t, dir), "nothing created beside the old store")
		})
	}
}

// listDir is the names in dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}
