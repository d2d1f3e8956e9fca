package cls

import (
	"slices"
	"sync"

	"github.com/auditpipe/auditpipe/schemas"
)

// Decision 0012 in the CLS sink. CLS has no unique key: whatever is sent
// is stored, so the store's rule (one event per cluster, auditID, stage
// and content hash; a different event under a reused auditID kept and
// marked) can only be approximated here, from what this process sent
// recently:
//
//   - an event whose identity and hash this process already had
//     acknowledged by CLS, or already has in the batch being sent, is not
//     sent again (a redelivery; counted as outcome "duplicate");
//   - an event whose identity this process sent recently with another
//     hash is sent with auditpipe.auditIDReused=true and counted in
//     auditpipe_clssink_auditid_reused_total.
//
// The memory is per process and bounded (recentIdentities), and lost on a
// restart; a rebalance moves a cluster's partition, and so its events, to
// another replica with another memory. So CLS can hold duplicates, and a
// reused auditID whose first event was sent by another process, or too
// long ago, is stored unmarked. Searches in CLS therefore de-duplicate and
// find reuse by the identity, which every log carries:
//
//	* | SELECT auditID, stage, count(DISTINCT "auditpipe.contentHash") AS contents
//	    GROUP BY auditID, stage HAVING contents > 1

// identity is an event's (cluster, auditID, stage).
type identity struct{ cluster, auditID, stage string }

// recent remembers the content hashes CLS acknowledged for the most recent
// identities. Two generations approximate an LRU without per-entry
// bookkeeping: lookups promote an entry into the current generation, and
// when it is full the previous one is dropped.
type recent struct {
	mu       sync.Mutex
	max      int // entries per generation
	cur, old map[identity][]string
}

func newRecent(max int) *recent {
	return &recent{max: max, cur: map[identity][]string{}, old: map[identity][]string{}}
}

// hashes returns the hashes remembered for id.
func (r *recent) hashes(id identity) []string {
	if r.max <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if h, ok := r.cur[id]; ok {
		return h
	}
	h, ok := r.old[id]
	if ok {
		delete(r.old, id)
		r.put(id, h)
	}
	return h
}

// add remembers that CLS acknowledged hash for id.
func (r *recent) add(id identity, hash string) {
	if r.max <= 0 || hash == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.cur[id]
	if !ok {
		h = r.old[id]
		delete(r.old, id)
	}
	if !slices.Contains(h, hash) {
		h = append(slices.Clip(h), hash)
	}
	r.put(id, h)
}

func (r *recent) put(id identity, h []string) {
	if _, ok := r.cur[id]; !ok && len(r.cur) >= r.max {
		r.old, r.cur = r.cur, make(map[identity][]string, r.max)
	}
	r.cur[id] = h
}

// batchIdentities tracks the identities of one Write: what is being sent
// counts as sent for the rest of the batch.
type batchIdentities struct {
	recent *recent
	sent   map[identity][]string
}

// verdict says what to do with one event: skip it (a duplicate), or send
// it, marked when its auditID was reused. An event without a hash (from a
// processor before decision 0012) is always sent and never marked.
func (b *batchIdentities) verdict(id identity, hash string) (duplicate, reused bool) {
	if hash == "" {
		return false, false
	}
	known := append(slices.Clip(b.recent.hashes(id)), b.sent[id]...)
	if slices.Contains(known, hash) {
		return true, false
	}
	b.sent[id] = append(b.sent[id], hash)
	return false, len(known) > 0
}

// acknowledged remembers everything the batch sent.
func (b *batchIdentities) acknowledged() {
	for id, hs := range b.sent {
		for _, h := range hs {
			b.recent.add(id, h)
		}
	}
}

// reusedKey is the CLS key of the marker.
const reusedKey = schemas.PipelineKey + ".auditIDReused"
