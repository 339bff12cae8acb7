package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestCountDue(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	base := time.Now()
	if c, err := db.CountDue(base.UnixMilli(), base.UnixMilli()); err != nil || c != (DueCounts{}) {
		t.Fatalf("empty index: %+v %v", c, err)
	}
	var items []Inbound
	for i := 0; i < 10; i++ {
		it := inbound(in, fmt.Sprint(i), base.Add(time.Duration(i)*time.Millisecond))
		it.State.NextAt = base.UnixMilli() + int64(i)*1000 // one due each second
		if i == 9 {
			it.State.Status, it.State.NextAt = StatusFailed, 0 // no due entry
		}
		items = append(items, it)
	}
	if err := db.StoreInbound(items); err != nil {
		t.Fatal(err)
	}
	// Times relative to base, in ms.
	f := func(due, overdue int64, want DueCounts) {
		t.Helper()
		got, err := db.CountDue(base.UnixMilli()+due, base.UnixMilli()+overdue)
		if err != nil || got != want {
			t.Fatalf("CountDue(%d, %d) = %+v, %v; want %+v", due, overdue, got, err, want)
		}
	}
	oldest := base.UnixMilli()
	f(-1, -1, DueCounts{Scheduled: 9, OldestMs: oldest})
	f(0, -1, DueCounts{Scheduled: 9, Due: 1, OldestMs: oldest})
	f(4500, 0, DueCounts{Scheduled: 9, Due: 5, Overdue: 1, OldestMs: oldest})
	f(60_000, 60_000, DueCounts{Scheduled: 9, Due: 9, Overdue: 9, OldestMs: oldest})
}

func TestListAllEvents(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	// Events of the three accounts interleave in time, so the key order
	// (account first) is not the order of the listing.
	var accs []Account
	for _, name := range []string{"a", "b", "c"} {
		acc, _, _, err := db.CreateAccount(name)
		if err != nil {
			t.Fatal(err)
		}
		accs = append(accs, acc)
	}
	base := time.Now()
	var failed []string // newest first, over all accounts
	var items []Inbound
	for i := 0; i < 300; i++ {
		acc := accs[(i*7)%3]
		in, err := db.CreateInbox(Inbox{AccountID: acc.ID, MailboxName: fmt.Sprintf("box%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		it := inbound(in, fmt.Sprint(i), base.Add(time.Duration(i)*time.Millisecond))
		if i%3 != 0 {
			it.State.Status, it.State.NextAt = StatusFailed, 0
			failed = append(failed, it.Event.ID)
		}
		items = append(items, it)
	}
	if err := db.StoreInbound(items); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(failed)
	ids := func(evs []AccountEvent) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	for _, p := range []Page{{Limit: 10}, {Limit: 100, Offset: 0}, {Limit: 7, Offset: 50}, {Limit: 100, Offset: 150}, {Limit: 10, Offset: 500}} {
		got, total, err := db.ListAllEvents("", EventFilter{Status: StatusFailed}, p)
		if err != nil {
			t.Fatal(err)
		}
		want := failed[min(p.Offset, len(failed)):min(p.Offset+p.Limit, len(failed))]
		if total != len(failed) || !slices.Equal(ids(got), want) {
			t.Fatalf("page %+v: total %d (want %d)\n got %v\nwant %v", p, total, len(failed), ids(got), want)
		}
		for _, e := range got {
			if e.State.Status != StatusFailed || e.AccountID == "" {
				t.Fatalf("listed %+v", e)
			}
		}
	}
	// One account's events only.
	got, total, err := db.ListAllEvents(accs[1].ID, EventFilter{}, Page{Limit: 100})
	if err != nil || total != 100 || len(got) != 100 {
		t.Fatalf("account b: %d listed, total %d, %v", len(got), total, err)
	}
	for _, e := range got {
		if e.AccountID != accs[1].ID {
			t.Fatalf("account filter let %s through", e.AccountID)
		}
	}
	if !slices.IsSortedFunc(got, func(a, b AccountEvent) int { return strings.Compare(b.ID, a.ID) }) {
		t.Fatal("not newest first")
	}
}

// BenchmarkListAllEvents measures the operator's failed-events listing
// over a store of b.N-independent size (100,000 events, 1% failed).
func BenchmarkListAllEvents(b *testing.B) {
	db, err := Open(Options{Dir: b.TempDir(), OnFatal: func(msg string) { panic(msg) }})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	acc, _, _, _ := db.CreateAccount("a")
	in, err := db.CreateInbox(Inbox{AccountID: acc.ID, MailboxName: "agent"})
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now()
	for i := 0; i < 100_000; i += 1000 {
		var items []Inbound
		for j := i; j < i+1000; j++ {
			it := inbound(in, fmt.Sprint(j), base.Add(time.Duration(j)*time.Microsecond))
			it.State.Status, it.State.NextAt = StatusDelivered, 0
			if j%100 == 0 {
				it.State.Status = StatusFailed
			}
			items = append(items, it)
		}
		if err := db.StoreInbound(items); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		evs, total, err := db.ListAllEvents("", EventFilter{Status: StatusFailed}, Page{Limit: 20})
		if err != nil || total != 1000 || len(evs) != 20 {
			b.Fatalf("%d of %d, %v", len(evs), total, err)
		}
	}
}
