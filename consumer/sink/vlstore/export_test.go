package vlstore

import (
	"context"

	"github.com/auditpipe/auditpipe/consumer/sink/eventstore"
)

// SearchPlan names how Search answers req: "native" (LogsQL) or
// "fallback" (the ephemeral SQLite store).
func SearchPlan(s *Store, req eventstore.SearchRequest) string {
	_, how, err := s.plan(req, maxFallbackCandidates)
	if err != nil {
		return err.Error()
	}
	return how
}

// SearchNoFallback is Search with a fallback that refuses every request
// (as too broad): what a native plan answers, or an error.
func SearchNoFallback(s *Store, req eventstore.SearchRequest) (eventstore.SearchResult, error) {
	return s.search(context.Background(), req, -1)
}

// check is admit's test for one event, without recording it.
func (ids *identities) check(id identity, cmp compared, old oldCopies) (dup, reused bool) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return ids.checkLocked(id.key(), cmp, old)
}

// Lowered reports whether s narrows full text by auditpipe:lower.
func Lowered(s *Store) bool { return s.lowered }

// LowerMarker is lowerMarker.
const LowerMarker = lowerMarker
