package privatefs

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTightenAndMkdirAll(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "kafka", "t-0"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "kafka", "t-0", "seg.log"), []byte("x"), 0o644))
	outside := filepath.Join(t.TempDir(), "outside")
	require.NoError(t, os.WriteFile(outside, []byte("x"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "link")))
	require.NoError(t, os.Chmod(root, 0o755))

	require.NoError(t, MkdirAll(root))
	info, err := os.Stat(root)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), "an existing directory is made private")

	require.NoError(t, Tighten(root))
	for path, want := range map[string]fs.FileMode{
		root:                                0o700,
		filepath.Join(root, "kafka"):        0o700,
		filepath.Join(root, "kafka", "t-0"): 0o700,
		filepath.Join(root, "kafka", "t-0", "seg.log"): 0o600,
	} {
		info, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, want, info.Mode().Perm(), path)
	}
	info, err = os.Stat(outside)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o644), info.Mode().Perm(), "a symlink's target outside the directory is left alone")
	require.NoError(t, Tighten(filepath.Join(root, "missing")), "a missing directory is nothing to do")
}
