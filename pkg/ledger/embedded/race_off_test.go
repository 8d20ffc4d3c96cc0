//go:build !race

package embedded_test

// raceDetector: the tests run under the race detector, whose timings say
// nothing of the ledger's.
const raceDetector = false
