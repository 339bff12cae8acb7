package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Race regressions of the delivery side found in review, kept as named
// tests.

func regInbound(t *testing.T, db *DB, in Inbox, nextAt int64) Inbound {
	t.Helper()
	it := inbound(in, "s", time.Now())
	it.State.NextAt = nextAt
	if err := db.StoreInbound([]Inbound{it}); err != nil {
		t.Fatal(err)
	}
	return it
}

// A delivery-state batch that read a state before an inbox deletion must
// not write it back after the deletion (a pending ghost the scheduler
// would retry forever).
func TestRegressionDeleteInboxWaitsForStateBatch(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	it := regInbound(t, db, in, time.Now().UnixMilli()+3_600_000)
	sb := db.newStateBatch() // the writer, mid read-modify-write
	old, err := db.GetEventState(in.AccountID, it.Event.ID)
	if err != nil {
		t.Fatal(err)
	}
	nw := old
	nw.NextAt = old.NextAt + 1
	sb.PutState(in.AccountID, it.Event.ID, old, nw)
	deleted := make(chan error, 1)
	go func() { _, err := db.DeleteInbox(in.AccountID, in.ID); deleted <- err }()
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if st, err := db.GetEventState(in.AccountID, it.Event.ID); err == nil {
		t.Fatalf("deleted inbox's event state survives: %+v", st)
	}
}

// A state whose event record is gone is deleted, not retried forever.
func TestRegressionStateWithoutEventIsDeleted(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	it := regInbound(t, db, in, time.Now().UnixMilli())
	if _, err := db.DeleteInbox(in.AccountID, in.ID); err != nil {
		t.Fatal(err)
	}
	// A ghost state as a bug elsewhere could leave it.
	sb := db.newStateBatch()
	sb.PutState(in.AccountID, it.Event.ID, EventState{}, it.State)
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	db.StartDeliveries(DeliveryConfig{Deliver: func(l *Lease) bool {
		go func() {
			if db.Ready(l) {
				attempts.Add(1)
				db.Release(l, 0)
			}
		}()
		return true
	}})
	defer db.StopDeliveries(t.Context())
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := db.GetEventState(in.AccountID, it.Event.ID); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ghost state is still there")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if n := db.dl.m.scheduled.Get(); n > 3 {
		t.Fatalf("the ghost was scheduled %d times", n)
	}
	if n := attempts.Load(); n != 0 {
		t.Fatalf("the ghost was attempted %d times", n)
	}
}

// A due entry read through a scan snapshot after the writer moved the
// event on must not trigger an attempt before the event's real due time.
func TestRegressionStaleDueEntryDoesNotAttemptEarly(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	t0 := time.Now().UnixMilli()
	it := regInbound(t, db, in, t0)
	// Attempt 1 failed: the writer moved NextAt to t0+30s (deleting d/t0).
	sb := db.newStateBatch()
	old, _ := db.GetEventState(in.AccountID, it.Event.ID)
	nw := old
	nw.Attempts, nw.LastAt, nw.NextAt = 1, t0, t0+30_000
	sb.PutState(in.AccountID, it.Event.ID, old, nw)
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	// A scan that opened its iterator before that commit yields d/t0.
	if !db.dl.flights.tryClaim(it.Event.ID) {
		t.Fatal("already claimed")
	}
	if db.Ready(&Lease{AccountID: in.AccountID, EventID: it.Event.ID, DueMs: t0}) {
		t.Fatal("a stale due entry is ready for an attempt")
	}
	if db.dl.flights.claimed(it.Event.ID) {
		t.Fatal("the claim was kept")
	}
}

func mustAccount(t *testing.T, db *DB) string {
	t.Helper()
	acc, _, _, err := db.CreateAccount("a")
	if err != nil {
		t.Fatal(err)
	}
	return acc.ID
}

// OnStored reports each stored event once, with its payload, an account's
// in id order.
func TestOnStoredReportsEventsInOrder(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	var mu sync.Mutex
	var got []Event
	db.OnStored(func(evs []Event) { mu.Lock(); got = append(got, evs...); mu.Unlock() })
	var want []string
	for i := range 20 {
		err := db.Append([]string{in.AccountID}, func(ids []string) ([]Inbound, error) {
			it := inbound(in, fmt.Sprint("s", i), time.Now())
			it.Event.ID = ids[0]
			it.Event.Head, it.Event.Tail = db.RenderEvent(ids[0], &it.Message)
			want = append(want, ids[0])
			return []Inbound{it}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%d events reported, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i] || len(got[i].Tail) == 0 {
			t.Fatalf("event %d: %s (payload %d bytes), want %s", i, got[i].ID, len(got[i].Tail), want[i])
		}
	}
}

// Stopping deliveries while the scheduler works through a due backlog
// must not call a cleared Deliver (it panicked, and raced).
func TestRegressionStopDuringScan(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	past := time.Now().Add(-time.Hour)
	var items []Inbound
	for range 3000 {
		items = append(items, inbound(in, "s", past))
		if len(items) == 100 {
			if err := db.StoreInbound(items); err != nil {
				t.Fatal(err)
			}
			items = nil
		}
	}
	started := make(chan struct{})
	var once sync.Once
	db.StartDeliveries(DeliveryConfig{Deliver: func(l *Lease) bool {
		once.Do(func() { close(started) })
		time.Sleep(50 * time.Microsecond) // a slow queue: the scan is long
		return true
	}})
	<-started
	db.StopDeliveries(t.Context())
}

// A failed store (a fatal Pebble error) must not hand the same attempt
// out again and again: each failed record used to rewind the scheduler
// to the lease's due key (thousands of attempts a second).
func TestRegressionFailedStoreNoHotLoop(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	regInbound(t, db, in, time.Now().UnixMilli())
	db.failed.Store(true) // as Pebble's OnFatal does
	var attempts atomic.Int32
	db.StartDeliveries(DeliveryConfig{Deliver: func(l *Lease) bool {
		go func() {
			if !db.Ready(l) {
				return
			}
			attempts.Add(1)
			db.Record(l, func(st EventState, now int64) (EventState, *Attempt) {
				st.Status, st.NextAt = StatusDelivered, 0
				return st, &Attempt{N: 1, OK: true}
			}, nil)
		}()
		return true
	}})
	defer db.StopDeliveries(t.Context())
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) { // a window in which nothing may happen
		if n := attempts.Load(); n > 2 {
			t.Fatalf("%d attempts of one event on a failed store", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The first due time is computed once: deliveries starting between
// Append's store and its release must not leave an event due now behind
// the scheduler's cursor.
func TestRegressionFirstDueComputedOnce(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	in := newInbox(t, db, mustAccount(t, db), "box")
	dl := db.dl
	evIDs := dl.flights.newEvents([]string{in.AccountID}) // Append: claim
	it := inbound(in, "s", time.Now())
	it.Event.ID = evIDs[0]
	_, delay := dl.deliverFunc() // 0: not started yet
	it.State = firstState(&it.Event, delay)
	if err := db.StoreInbound([]Inbound{it}); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1)
	db.StartDeliveries(DeliveryConfig{FirstDelay: 30 * time.Second, Deliver: func(l *Lease) bool {
		select {
		case got <- struct{}{}:
		default:
		}
		return true
	}})
	defer db.StopDeliveries(t.Context())
	dl.committed([]Event{it.Event}, delay, nil) // Append's release, with its own delay
	select {
	case <-got:
	case <-time.After(3 * time.Second):
		t.Fatalf("an event due now (NextAt %d) was not handed out", it.State.NextAt)
	}
}
