package engine

import (
	"math"
	"testing"
	"time"
)

func TestRateWindow(t *testing.T) {
	var w rateWindow
	t0 := time.Unix(1_000_000, 0)
	reading := func(stored uint64) counterSet { return counterSet{stored: stored} }
	// observe at t0+sec with the counter at stored; want the base reading's
	// counter (or -1 for none).
	f := func(sec float64, stored uint64, window time.Duration, want int) {
		t.Helper()
		base, ok := w.observe(t0.Add(time.Duration(sec*float64(time.Second))), reading(stored), window)
		got := -1
		if ok {
			got = int(base.c.stored)
		}
		if got != want {
			t.Fatalf("at %.1fs: base %d, want %d", sec, got, want)
		}
	}
	f(0, 0, time.Minute, -1)   // nothing yet
	f(0.3, 5, time.Minute, 0)  // too close to keep, but the first is a base
	f(2, 20, time.Minute, 0)   // kept
	f(30, 300, time.Minute, 0) // still inside the minute: the oldest
	f(61, 610, time.Minute, 0) // the newest at least a minute old
	f(62.5, 625, time.Minute, 20)
	f(63, 630, 10*time.Second, 300)
	if n := len(w.samples); n != 5 { // 0, 2, 30, 61, 62.5
		t.Fatalf("%d readings kept", n)
	}
	// Readings older than the longest window are dropped, but for the one
	// that starts it.
	f(62.5+rateWindowMax.Seconds()+1, 9000, rateWindowMax, 625)
	if n := len(w.samples); n != 2 { // 62.5 and the new one
		t.Fatalf("%d readings kept after the window moved on", n)
	}
}

func TestComputeRates(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	base := rateSample{at: t0, c: counterSet{stored: 10, failed: 1, attempts: [3][2]uint64{{5, 1}, {2, 2}, {0, 3}}}}
	cur := counterSet{stored: 30, failed: 3, attempts: [3][2]uint64{{15, 1}, {12, 4}, {0, 7}}}
	r := computeRates(base, cur, t0.Add(10*time.Second))
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if r == nil || r.WindowSeconds != 10 || !near(r.EventsStored, 2) || !near(r.EventsFailed, 0.2) || !near(r.Deliveries, 2) ||
		!near(r.FailedAttempts, 0.6) || !near(r.Attempts["webhook"].Failed, 0.2) || !near(r.Attempts["none"].Failed, 0.4) {
		t.Fatalf("rates %+v", r)
	}
	if computeRates(base, cur, t0.Add(100*time.Millisecond)) != nil {
		t.Fatal("a rate over 100 ms")
	}
}
