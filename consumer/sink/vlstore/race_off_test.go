//go:build !race

package vlstore_test

// raceDetector: see race_on_test.go.
const raceDetector = false
