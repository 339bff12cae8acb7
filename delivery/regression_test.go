package delivery

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// Race regressions found in review, kept as named tests.

func regOpen(t *testing.T) (*store.DB, store.Account, store.Inbox) {
	t.Helper()
	db, err := store.Open(store.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	acc, _, _, err := db.CreateAccount("a")
	if err != nil {
		t.Fatal(err)
	}
	in, err := db.CreateInbox(store.Inbox{AccountID: acc.ID, MailboxName: "box"})
	if err != nil {
		t.Fatal(err)
	}
	return db, acc, in
}

func regInbound(t *testing.T, db *store.DB, in store.Inbox, nextAt int64) store.Inbound {
	t.Helper()
	now := time.Now()
	m := store.Message{ID: ids.NewAt(ids.Message, now), InboxID: in.ID, AccountID: in.AccountID,
		ThreadID: ids.NewAt(ids.Thread, now), From: "a@b.c", To: "box@test", Subject: "s", BodyText: "b", ReceivedAt: now}
	ev := store.Event{ID: ids.NewAt(ids.Event, now), AccountID: in.AccountID, InboxID: in.ID, Type: store.EventMessageReceived, MessageID: m.ID}
	it := store.Inbound{Message: m, Raw: []byte("x"), Event: ev,
		State: store.EventState{InboxID: in.ID, Type: ev.Type, Status: store.StatusPending, NextAt: nextAt}}
	if err := db.StoreInbound([]store.Inbound{it}); err != nil {
		t.Fatal(err)
	}
	return it
}

// A delivery-state batch that read a state before an inbox deletion must
// not write it back after the deletion (a pending ghost the scheduler
// would retry forever).
func TestRegressionDeleteInboxWaitsForStateBatch(t *testing.T) {
	db, acc, in := regOpen(t)
	it := regInbound(t, db, in, time.Now().UnixMilli()+3_600_000)
	sb := db.NewStateBatch() // the writer, mid read-modify-write
	old, err := db.GetEventState(acc.ID, it.Event.ID)
	if err != nil {
		t.Fatal(err)
	}
	nw := old
	nw.NextAt = old.NextAt + 1
	sb.PutState(acc.ID, it.Event.ID, old, nw)
	deleted := make(chan error, 1)
	go func() { _, err := db.DeleteInbox(acc.ID, in.ID); deleted <- err }()
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if st, err := db.GetEventState(acc.ID, it.Event.ID); err == nil {
		t.Fatalf("deleted inbox's event state survives: %+v", st)
	}
}

// A state whose event record is gone is deleted, not retried forever.
func TestRegressionStateWithoutEventIsDeleted(t *testing.T) {
	db, acc, in := regOpen(t)
	it := regInbound(t, db, in, time.Now().UnixMilli())
	if _, err := db.DeleteInbox(acc.ID, in.ID); err != nil {
		t.Fatal(err)
	}
	// A ghost state as a bug elsewhere could leave it.
	sb := db.NewStateBatch()
	sb.PutState(acc.ID, it.Event.ID, store.EventState{}, it.State)
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	d := New(db, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	d.Start()
	defer func() { _ = d.Shutdown(t.Context()) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := db.GetEventState(acc.ID, it.Event.ID); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ghost state is still there")
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	if n := d.m.scheduled.Get(); n > 3 {
		t.Fatalf("the ghost was scheduled %d times", n)
	}
}

// A due entry read through a scan snapshot after the writer moved the
// event on must not trigger an attempt before the event's real due time.
func TestRegressionStaleDueEntryDoesNotAttemptEarly(t *testing.T) {
	db, acc, in := regOpen(t)
	t0 := time.Now().UnixMilli()
	it := regInbound(t, db, in, t0)
	d := New(db, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	// Attempt 1 failed: the writer moved NextAt to t0+30s (deleting d/t0).
	sb := db.NewStateBatch()
	old, _ := db.GetEventState(acc.ID, it.Event.ID)
	nw := old
	nw.Attempts, nw.LastAt, nw.NextAt = 1, t0, t0+30_000
	sb.PutState(acc.ID, it.Event.ID, old, nw)
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	// A scan that opened its iterator before that commit yields d/t0.
	if !d.flights.tryClaim(it.Event.ID) {
		t.Fatal("already claimed")
	}
	d.attempt(&job{accountID: acc.ID, evtID: it.Event.ID, dueMs: t0})
	select {
	case o := <-d.w.in:
		t.Fatalf("outcome %+v for a stale due entry", o)
	default:
	}
	if d.flights.claimed(it.Event.ID) {
		t.Fatal("the claim was kept")
	}
}
