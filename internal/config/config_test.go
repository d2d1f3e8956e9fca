package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type sample struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

type nested struct {
	Inner  sample            `json:"inner"`
	List   []sample          `json:"list"`
	ByName map[string]sample `json:"byName"`
}

func (s sample) Validate() error {
	if s.Count < 0 {
		return errors.New("count: must not be negative")
	}
	return nil
}

func TestLoadKeepsDefaultsAndRejectsUnknownKeys(t *testing.T) {
	s := sample{Name: "default", Count: 3}
	require.NoError(t, Load([]byte("count: 5\n"), &s))
	require.Equal(t, sample{Name: "default", Count: 5}, s)

	err := Load([]byte("name: x\ncuont: 5\n"), &s)
	require.Error(t, err)
	require.Contains(t, err.Error(), `"cuont"`)

	var n nested
	err = Load([]byte("inner:\n  name: a\n  nmae: b\nlist:\n- count: 1\n  x: 2\n"), &n)
	require.ErrorContains(t, err, `unknown field "inner.nmae", "list[0].x"`)
	require.NoError(t, Load([]byte("inner:\n  name: a\nlist:\n- count: 1\nbyName:\n  a: {count: 2}\n"), &n))
	require.Equal(t, 2, n.ByName["a"].Count)
}

func TestLoadFileNamesFileAndRunsValidate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(path, []byte("count: -1\n"), 0o600))
	err := LoadFile(path, &sample{})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), path) && strings.Contains(err.Error(), "count: must not be negative"), err.Error())

	err = LoadFile(filepath.Join(t.TempDir(), "missing.yaml"), &sample{})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestDuration(t *testing.T) {
	var c struct {
		Every Duration `json:"every"`
	}
	require.NoError(t, Load([]byte("every: 1m30s\n"), &c))
	require.Equal(t, Duration(90*time.Second), c.Every)
	require.ErrorContains(t, Load([]byte("every: 90\n"), &c), `want a string like "30s"`)
	require.ErrorContains(t, Load([]byte("every: soon\n"), &c), "duration")
}
