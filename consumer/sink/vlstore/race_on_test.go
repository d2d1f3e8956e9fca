//go:build race

package vlstore_test

// raceDetector: the race detector makes the fallback's SQLite about ten
// times slower; the differential tests page with larger pages then.
const raceDetector = true
