package cls

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRecentIsBounded: at most two generations of max identities are
// held, and an identity in use stays.
func TestRecentIsBounded(t *testing.T) {
	r := newRecent(10)
	id := func(i int) identity { return identity{"c", strconv.Itoa(i), "ResponseComplete"} }
	r.add(id(0), "h0")
	for i := 1; i < 100; i++ {
		r.add(id(i), "h"+strconv.Itoa(i))
		require.Equal(t, []string{"h0"}, r.hashes(id(0)), "looked up after every add: stays, at %d", i)
		require.LessOrEqual(t, len(r.cur)+len(r.old), 20)
	}
	require.Nil(t, r.hashes(id(1)), "not used since: forgotten")
	require.Equal(t, []string{"h99"}, r.hashes(id(99)))
	r.add(id(99), "other")
	r.add(id(99), "h99")
	require.Equal(t, []string{"h99", "other"}, r.hashes(id(99)))

	off := newRecent(-1)
	off.add(id(1), "h1")
	require.Nil(t, off.hashes(id(1)))
}
