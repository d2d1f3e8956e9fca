package app

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// checkNoSQLiteStore refuses a vlogs store where an earlier version kept
// its SQLite store. vlogs became the default engine (decision 0026,
// migration step 4): a config that named no engine and was written for
// SQLite would otherwise open a new, empty store and leave every stored
// event behind, unsearched. Checked where the old store would be:
//   - local.path itself, a file where vlogs keeps a directory;
//   - when local.path does not exist yet, <local.path>.db (the old
//     default auditpipe-events.db beside the new auditpipe-events) and
//     events.db beside it (the chart's /var/lib/auditpipe/events.db beside
//     /var/lib/auditpipe/vlogs). Once local.path exists (a migrated or new
//     vlogs store), it is the store, whatever lies beside it.
func checkNoSQLiteStore(cfg LocalConfig) error {
	if !cfg.Enabled || cfg.Engine != eventstore.EngineVictoriaLogs || cfg.Path == "" {
		return nil
	}
	path := filepath.Clean(cfg.Path)
	st, err := os.Stat(path)
	switch {
	case err == nil && st.Mode().IsRegular():
		return fmt.Errorf("local.path: %s is a file, probably a SQLite store from an earlier version (sqlite was the default engine), "+
			"but the vlogs engine keeps its store in a directory: set local.engine: sqlite to keep using it, "+
			"or copy its events with \"consumer store migrate --from %s --to DIR\" and set local.path: DIR", path, path)
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		return nil // a directory is a vlogs store; other errors are Open's to report
	}
	for _, old := range []string{path + ".db", filepath.Join(filepath.Dir(path), "events.db")} {
		if isSQLiteFile(old) {
			return fmt.Errorf("local.path: %s does not exist but %s does, the SQLite store of an earlier version (sqlite was the default engine): "+
				"set local.engine: sqlite and local.path: %s to keep using it, "+
				"or copy its events first with \"consumer store migrate --from %s --to %s\" (or move it away to start with an empty store)",
				path, old, old, old, path)
		}
	}
	return nil
}

// sqliteHeader starts every SQLite database file.
const sqliteHeader = "SQLite format 3\x00"

// isSQLiteFile reports whether path is a regular file holding a SQLite
// database: a file that merely sits beside the store, under a name an old
// store had, is not one.
func isSQLiteFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return false
	}
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil {
		return false
	}
	return string(head) == sqliteHeader
}
