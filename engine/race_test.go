//go:build race

package engine_test

// raceEnabled reports a -race build (tests too slow under it skip).
const raceEnabled = true
