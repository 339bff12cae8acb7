//go:build race

package mailparse

const raceEnabled = true
