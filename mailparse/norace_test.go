//go:build !race

package mailparse

const raceEnabled = false
