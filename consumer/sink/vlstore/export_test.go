package vlstore

// SetCheckpointEvery makes n Write calls share a checkpoint: for the
// benchmarks that measure what a less frequent checkpoint would save. It
// breaks Write's contract (durable on return) for n > 1.
func SetCheckpointEvery(s *Store, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpointEvery = n
}
