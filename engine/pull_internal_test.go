package engine

import (
	"testing"
	"time"
)

func TestParseWait(t *testing.T) {
	f := func(in string, want time.Duration) {
		t.Helper()
		got, err := parseWait(in)
		if err != nil || got != want {
			t.Errorf("parseWait(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	f("", 0)
	f("0", 0)
	f("30s", 30*time.Second)
	f("30", 30*time.Second)
	f("2.5", 2500*time.Millisecond)
	f("250ms", 250*time.Millisecond)
	f("60s", 60*time.Second)
	f("2m", 60*time.Second) // clamped
	f("3600", 60*time.Second)
	f("1e9", 60*time.Second)
	for _, bad := range []string{"soon", "-1s", "-3", "NaN", "1x"} {
		if _, err := parseWait(bad); err == nil {
			t.Errorf("parseWait(%q) accepted", bad)
		}
	}
}
