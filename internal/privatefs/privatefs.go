// Package privatefs keeps a data directory private to the user running
// auditpipe: directories 0700, files 0600. The data directory holds
// unredacted audit events (the broker's copy of audit.raw, the spool) and
// secrets (the broker password), so nobody else on the host may read it.
//
// Three layers, because no single one covers every writer:
//   - MkdirAll creates the directory 0700 and forces the mode on an
//     existing one. Other users cannot enter a 0700 directory, whatever
//     the modes of the files below it: this is the guarantee.
//   - A process umask of 077 (set by the all-in-one's run command) makes
//     libraries that create files with fixed modes (kfake writes 0644
//     files and 0755 directories, SQLite 0644) create them private.
//   - Tighten fixes what was created before (older versions, a library
//     embedding without the umask).
package privatefs

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Modes of everything under a data directory.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// MkdirAll creates dir (and missing parents) with DirMode and sets the
// mode of dir itself even when it already existed.
func MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create private directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("make directory %s private: %w", dir, err)
	}
	return nil
}

// Tighten sets every directory under root (root included) to DirMode and
// every regular file to FileMode, and removes group and other permission
// bits from anything else (sockets, FIFOs). Symbolic links are not
// followed. A file that disappears during the walk (a log segment deleted
// by retention) is skipped.
func Tighten(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return fmt.Errorf("make %s private: %w", path, err)
		}
		var mode fs.FileMode
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			mode = DirMode
		case d.Type().IsRegular():
			mode = FileMode
		default:
			info, err := d.Info()
			if err != nil {
				return nil
			}
			mode = info.Mode().Perm() &^ 0o077
		}
		if err := os.Chmod(path, mode); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("make %s private: %w", path, err)
		}
		return nil
	})
}
