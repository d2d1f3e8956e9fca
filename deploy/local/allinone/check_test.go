package allinone

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
	"github.com/auditpipe/auditpipe/consumer/sink/local"
)

// TestCheckRefusesVLogsOverSQLite: engine vlogs on a data directory with
// an earlier version's SQLite store and no vlogs store is refused by
// Check and Start, before anything starts, with the file and both ways
// out named; a migrated data directory (both stores), engine sqlite, or
// a new data directory pass.
func TestCheckRefusesVLogsOverSQLite(t *testing.T) {
	sqliteStore := func(t *testing.T, dataDir string) {
		t.Helper()
		path := StorePath(dataDir, eventstore.EngineSQLite)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		s, err := local.Open(path, local.Options{})
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	for name, tc := range map[string]struct {
		engine  string
		setup   func(t *testing.T, dataDir string)
		refused bool
	}{
		"vlogs over the SQLite store": {engine: eventstore.EngineVictoriaLogs, setup: sqliteStore, refused: true},
		"vlogs, migrated": {engine: eventstore.EngineVictoriaLogs, setup: func(t *testing.T, dataDir string) {
			sqliteStore(t, dataDir)
			require.NoError(t, os.Mkdir(StorePath(dataDir, eventstore.EngineVictoriaLogs), 0o700))
		}},
		"vlogs, new data directory": {engine: eventstore.EngineVictoriaLogs, setup: func(*testing.T, string) {}},
		"sqlite keeps its store":    {engine: eventstore.EngineSQLite, setup: sqliteStore},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir = t.TempDir()
			cfg.Store.Engine = tc.engine
			tc.setup(t, cfg.DataDir)
			if !tc.refused {
				require.NoError(t, Check(cfg))
				return
			}
			old := filepath.Join(cfg.DataDir, "store", "events.db")
			vl := filepath.Join(cfg.DataDir, "store", "vlogs")
			err := Check(cfg)
			require.EqualError(t, err, "store.engine: vlogs (now the default), but "+old+" holds the SQLite store of an earlier version and "+vl+" does not exist: "+
				"set store.engine: sqlite (or run with --store-engine sqlite) to keep using it, "+
				`or copy its events first with "auditpipe store migrate --data-dir `+cfg.DataDir+`"`)
			_, err = Start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			require.ErrorContains(t, err, old)
			require.NoDirExists(t, vl, "no new store")
			require.NoDirExists(t, filepath.Join(cfg.DataDir, "kafka"), "no broker")
		})
	}
}
