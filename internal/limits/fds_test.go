package limits

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func testDescriptors(budget int64) *Descriptors {
	set := metrics.NewSet()
	d := &Descriptors{limit: budget, budget: budget, refused: map[string]*metrics.Counter{}, evicted: map[string]*metrics.Counter{},
		rl: RateLog{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Every: time.Second}}
	for _, r := range []string{RefusedBudget, RefusedPerIP} {
		d.refused[r] = set.NewCounter(`mailwire_connections_refused_total{reason="` + r + `"}`)
	}
	for _, r := range []string{EvictedUnproven, EvictedIdle} {
		d.evicted[r] = set.NewCounter(`mailwire_connections_evicted_total{reason="` + r + `"}`)
	}
	return d
}

// A full budget asks evict for room; the evicted slot is given back once
// (by Evicted) and the new connection takes it.
func TestAdmitEvictingMakesRoom(t *testing.T) {
	d := testDescriptors(2)
	g := NewGate("http", d, 0)
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")
	for i := 0; i < 2; i++ {
		if ok, _ := g.Admit(a); !ok {
			t.Fatal("refused within the budget")
		}
	}
	if ok, reason := g.AdmitEvicting(b, func() bool { return false }); ok || reason != RefusedBudget {
		t.Fatalf("nothing to evict: %v %q", ok, reason)
	}
	calls := 0
	ok, _ := g.AdmitEvicting(b, func() bool { calls++; g.Evicted(a, EvictedIdle); return true })
	if !ok || calls != 1 {
		t.Fatalf("admitted %v after %d evictions", ok, calls)
	}
	if d.Open() != 2 || g.Open(a) != 1 || g.Open(b) != 1 || d.evicted[EvictedIdle].Get() != 1 || d.evicted[EvictedUnproven].Get() != 0 {
		t.Fatalf("open %d, from a %d, from b %d, evicted %d", d.Open(), g.Open(a), g.Open(b), d.evicted[EvictedIdle].Get())
	}
	g.Release(a)
	g.Release(b)
	if d.Open() != 0 {
		t.Fatalf("open %d after every release", d.Open())
	}
}

// The per-address cap is not a reason to evict.
func TestAdmitEvictingKeepsThePerAddressCap(t *testing.T) {
	g := NewGate("http", testDescriptors(10), 1)
	a := netip.MustParseAddr("127.0.0.2")
	g.Admit(a)
	if ok, reason := g.AdmitEvicting(a, func() bool { t.Fatal("evict called"); return false }); ok || reason != RefusedPerIP {
		t.Fatalf("%v %q", ok, reason)
	}
}
