//go:build race

package store

// raceEnabled reports a -race build: sync.Pool drops a share of what is
// put back under it, so allocation counts are not the program's.
const raceEnabled = true
