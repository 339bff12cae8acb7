package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/internal/ids"
)

func openMem(t *testing.T, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open(Options{Dir: "/db", FS: fs, OnFatal: func(msg string) { panic(msg) }})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newInbox(t *testing.T, db *DB, acc, name string) Inbox {
	t.Helper()
	in, err := db.CreateInbox(Inbox{AccountID: acc, MailboxName: name})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// inbound builds what ingest writes for one message.
func inbound(in Inbox, subject string, now time.Time) Inbound {
	m := Message{ID: ids.NewAt(ids.Message, now), InboxID: in.ID, AccountID: in.AccountID,
		ThreadID: ids.NewAt(ids.Thread, now), RFCMessageID: "<" + subject + "@x>", From: "a@b.c",
		To: in.MailboxName + "@test", Subject: subject, BodyText: "body " + subject, ReceivedAt: now,
		Attachments: []AttachmentMeta{{Filename: "f.txt", ContentType: "text/plain", SizeBytes: 3}}}
	ev := Event{ID: ids.NewAt(ids.Event, now), AccountID: in.AccountID, InboxID: in.ID, Type: EventMessageReceived, MessageID: m.ID}
	return Inbound{
		Message: m, Raw: []byte("Subject: " + subject + "\r\n\r\nbody"), Attachments: [][]byte{[]byte("abc")},
		ThreadRefs: []string{m.RFCMessageID}, Event: ev,
		State: EventState{InboxID: in.ID, Type: ev.Type, Status: StatusPending, NextAt: now.UnixMilli()},
	}
}

func TestAccountsAndKeys(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	acc, key, plain, err := db.CreateAccount("acme")
	if err != nil {
		t.Fatal(err)
	}
	if !ids.ValidAPIKey(plain) || bytes.Contains(mustJSON(key), []byte(plain)) {
		t.Fatalf("key %q stored as %s", plain, mustJSON(key))
	}
	got, err := db.Authenticate(plain)
	if err != nil || got.AccountID != acc.ID || got.ID != key.ID {
		t.Fatalf("authenticate: %+v %v", got, err)
	}
	for _, bad := range []string{"", "om_", plain[:len(plain)-1] + "0", "OM_" + plain[3:], plain + "0"} {
		if bad == plain {
			continue
		}
		if _, err := db.Authenticate(bad); !errors.Is(err, ErrNotFound) {
			t.Fatalf("authenticate(%q) = %v", bad, err)
		}
	}
	k2, plain2, err := db.CreateAPIKey(acc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeAPIKey(key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Authenticate(plain); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoked key authenticates: %v", err)
	}
	if ok, _ := db.KeyExists(key.ID); ok {
		t.Fatal("revoked key exists")
	}
	if got, err := db.Authenticate(plain2); err != nil || got.ID != k2.ID {
		t.Fatalf("second key: %v", err)
	}
	if _, _, err := db.CreateAPIKey("acc_01M8C9RB9X5V865CKTKNCS7WF4"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("key for unknown account: %v", err)
	}
}

func TestInboxesAndIsolation(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	b, _, _, _ := db.CreateAccount("b")
	in := newInbox(t, db, a.ID, "agent")
	if _, err := db.CreateInbox(Inbox{AccountID: b.ID, MailboxName: "agent"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("address taken across accounts: %v", err)
	}
	if _, err := db.GetInbox(b.ID, in.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("foreign inbox: %v", err)
	}
	if got, err := db.InboxByMailbox("agent"); err != nil || got.ID != in.ID {
		t.Fatalf("by mailbox: %v", err)
	}
	if ok, _ := db.InboxOwned(b.ID, in.ID); ok {
		t.Fatal("owned by b")
	}
	list, total, err := db.ListInboxes(a.ID, Page{Limit: 10})
	if err != nil || total != 1 || list[0].ID != in.ID {
		t.Fatalf("list: %v %d %v", list, total, err)
	}
}

// The address lookup is cached (SMTP looks up every RCPT TO): a deleted
// inbox's address stops resolving at once, and the same mailbox name
// created again, by another account, resolves to the new inbox.
func TestInboxByMailboxFollowsDeletion(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	b, _, _, _ := db.CreateAccount("b")
	old := newInbox(t, db, a.ID, "agent")
	for range 2 { // the second lookup is served by the cache
		if got, err := db.InboxByMailbox("agent"); err != nil || got.ID != old.ID {
			t.Fatalf("by mailbox: %+v %v", got, err)
		}
	}
	if _, err := db.InboxByMailbox("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown mailbox: %v", err)
	}
	if _, err := db.DeleteInbox(a.ID, old.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := db.InboxByMailbox("agent"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted inbox still resolves: %+v %v", got, err)
	}
	nw := newInbox(t, db, b.ID, "agent")
	if got, err := db.InboxByMailbox("agent"); err != nil || got.ID != nw.ID || got.AccountID != b.ID {
		t.Fatalf("recreated mailbox: %+v %v (want %s)", got, err, nw.ID)
	}
}

func TestDeleteInboxRemovesEverything(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in, keep := newInbox(t, db, a.ID, "gone"), newInbox(t, db, a.ID, "kept")
	now := time.Now()
	var items []Inbound
	for i := 0; i < 5; i++ {
		items = append(items, inbound(in, fmt.Sprint("g", i), now), inbound(keep, fmt.Sprint("k", i), now))
	}
	items[0].IdempotencyKey, items[0].Reply = "h", []byte("{}")
	for i := range items {
		items[i].NewThread = true
	}
	if err := db.StoreInbound(items); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkThreadRead(a.ID, items[0].Message.ThreadID, true); err != nil {
		t.Fatal(err)
	}
	sb := db.newStateBatch()
	sb.PutAttempt(items[0].Event.ID, Attempt{N: 1, At: now, Channel: ChannelNone})
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	before := countKeys(t, db)
	deleted, err := db.DeleteInbox(a.ID, in.ID)
	if err != nil || len(deleted) != 5 {
		t.Fatalf("deleted %v %v", deleted, err)
	}
	// Every key that mentions the inbox, its messages or its events is gone.
	mention := []string{in.ID, in.MailboxName}
	for _, it := range items[:] {
		if it.Message.InboxID == in.ID {
			mention = append(mention, it.Message.ID, it.Event.ID, it.Message.ThreadID)
		}
	}
	_ = db.scan(nil, false, func(k, v []byte) bool {
		for _, m := range mention {
			if bytes.Contains(k, []byte(m)) || (bytes.HasPrefix(k, []byte(pDue)) && bytes.Contains(k, []byte(m))) {
				t.Errorf("key %q survives the deletion", k)
			}
		}
		return true
	})
	after := countKeys(t, db)
	if after >= before {
		t.Fatalf("keys %d → %d", before, after)
	}
	// The other inbox is intact.
	msgs, total, _ := db.ListMessages(keep.ID, Page{Limit: 10})
	if total != 5 || len(msgs) != 5 {
		t.Fatalf("kept inbox has %d messages", total)
	}
	if _, total, _ := db.ListThreads(keep.ID, ThreadFilter{}, Page{Limit: 10}); total != 5 {
		t.Fatalf("kept inbox has %d threads", total)
	}
	if _, err := db.GetThread(a.ID, items[0].Message.ThreadID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted inbox's thread: %v", err)
	}
	// Storing into the deleted inbox fails and writes nothing.
	if err := db.StoreInbound([]Inbound{inbound(in, "late", now), inbound(keep, "late", now)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("store into deleted inbox: %v", err)
	}
	if _, total, _ := db.ListMessages(keep.ID, Page{Limit: 10}); total != 5 {
		t.Fatalf("a refused batch wrote %d messages", total-5)
	}
}

func countKeys(t *testing.T, db *DB) int {
	n := 0
	if err := db.scan(nil, false, func(_, _ []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEventLogOrderAndDueIndex(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in1, in2 := newInbox(t, db, a.ID, "one"), newInbox(t, db, a.ID, "two")
	base := time.Now()
	var evts []string
	for i := 0; i < 20; i++ {
		in := in1
		if i%3 == 0 {
			in = in2
		}
		it := inbound(in, fmt.Sprint(i), base.Add(time.Duration(i)*time.Millisecond))
		it.State.NextAt = base.UnixMilli() + int64(100-i) // due in reverse order
		if err := db.StoreInbound([]Inbound{it}); err != nil {
			t.Fatal(err)
		}
		evts = append(evts, it.Event.ID)
	}
	if !slices.IsSorted(evts) {
		t.Fatal("event ids do not sort by creation")
	}
	// EventsAfter: the suffix, oldest first, filtered, limited.
	got, _, err := db.EventsAfter(a.ID, evts[4], "", 100, 0, func(inbox, _ string) bool { return inbox == in1.ID })
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 5; i < 20; i++ {
		if i%3 != 0 {
			want = append(want, evts[i])
		}
	}
	var gotIDs []string
	for _, e := range got {
		gotIDs = append(gotIDs, e.ID)
		if len(e.Head) == 0 || len(e.Tail) == 0 || e.MessageID == "" {
			t.Fatalf("event %s not rendered", e.ID)
		}
	}
	if !slices.Equal(gotIDs, want) {
		t.Fatalf("after %s:\n got %v\nwant %v", evts[4], gotIDs, want)
	}
	if got, _, _ := db.EventsAfter(a.ID, evts[4], "", 3, 0, func(string, string) bool { return true }); len(got) != 3 || got[0].ID != evts[5] {
		t.Fatalf("limit: %v", got)
	}
	// ScanDue: time order, only due ones.
	var due []string
	_ = db.ScanDue(nil, base.UnixMilli()+90, func(d Due) bool { due = append(due, d.EventID); return true })
	if len(due) != 10 || due[0] != evts[19] || due[9] != evts[10] {
		t.Fatalf("due %v", due)
	}
	if at, ok, _ := db.NextDue(base.UnixMilli() + 90); !ok || at != base.UnixMilli()+91 {
		t.Fatalf("next due %d %v", at, ok)
	}
	// PutState moves the single due key.
	st, _ := db.GetEventState(a.ID, evts[19])
	nw := st
	nw.NextAt = base.UnixMilli() + 5000
	sb := db.newStateBatch()
	sb.PutState(a.ID, evts[19], st, nw)
	if err := sb.Commit(true); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = db.ScanDue(nil, base.UnixMilli()+10_000, func(d Due) bool {
		if d.EventID == evts[19] {
			n++
			if d.At != nw.NextAt {
				t.Fatalf("due at %d", d.At)
			}
		}
		return true
	})
	if n != 1 {
		t.Fatalf("%d due keys for one event", n)
	}
}

func TestSweepKeepsPendingAndRecent(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	old := time.Now().Add(-40 * 24 * time.Hour)
	status := []string{StatusDelivered, StatusFailed, StatusPending}
	var items []Inbound
	for i, st := range status {
		for _, at := range []time.Time{old, time.Now()} {
			it := inbound(in, fmt.Sprint(st, i, at.Unix()), at)
			it.State.Status = st
			if st != StatusPending {
				it.State.NextAt = 0
			}
			items = append(items, it)
		}
	}
	if err := db.StoreInbound(items); err != nil {
		t.Fatal(err)
	}
	n, err := db.SweepEvents(time.Now().Add(-7*24*time.Hour), time.Now().Add(-30*24*time.Hour), 100)
	if err != nil || n != 2 {
		t.Fatalf("swept %d %v", n, err)
	}
	_, total, _ := db.ListEvents(a.ID, EventFilter{}, Page{Limit: 100})
	if total != 4 {
		t.Fatalf("%d events left", total)
	}
}

// TestAcknowledgedInboundSurvivesCrash: whatever StoreInbound acknowledged
// is in a crash clone of the filesystem (synced data kept, a random share
// of unsynced data dropped), from many concurrent writers sharing fsyncs.
func TestAcknowledgedInboundSurvivesCrash(t *testing.T) {
	for round := 0; round < 4; round++ {
		fs := vfs.NewCrashableMem()
		db := openMem(t, fs)
		a, _, _, _ := db.CreateAccount("a")
		in := newInbox(t, db, a.ID, "agent")
		var (
			mu    sync.Mutex
			acked []Inbound
			wg    sync.WaitGroup
		)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					it := inbound(in, fmt.Sprintf("w%di%d", w, i), time.Now())
					if err := db.StoreInbound([]Inbound{it}); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked = append(acked, it)
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(round), 7))})
		_ = db.Close()

		db2 := openMem(t, clone)
		for _, it := range acked {
			if _, err := db2.GetMessage(a.ID, it.Message.ID); err != nil {
				t.Fatalf("round %d: acknowledged message %s lost: %v", round, it.Message.ID, err)
			}
			if raw, err := db2.GetRaw(a.ID, it.Message.ID); err != nil || !bytes.Equal(raw, it.Raw) {
				t.Fatalf("raw of %s: %v", it.Message.ID, err)
			}
			if st, err := db2.GetEventState(a.ID, it.Event.ID); err != nil || st.Status != StatusPending {
				t.Fatalf("event %s: %+v %v", it.Event.ID, st, err)
			}
			found := false
			_ = db2.ScanDue(nil, it.State.NextAt, func(d Due) bool {
				if d.EventID == it.Event.ID {
					found = true
					return false
				}
				return true
			})
			if !found {
				t.Fatalf("due entry of %s lost: the retry would never run", it.Event.ID)
			}
		}
		_ = db2.Close()
	}
}

func TestStateEncodingRoundTrip(t *testing.T) {
	f := func(st EventState) {
		t.Helper()
		got, err := decodeState(encodeState(st))
		if err != nil || got != st {
			t.Fatalf("round trip of %+v: %+v %v", st, got, err)
		}
	}
	f(EventState{})
	f(EventState{InboxID: "inb_01M8C9RB9X5V865CKTKNCS7WF4", Type: EventMessageReceived, Status: StatusPending, NextAt: 1764172800123})
	f(EventState{InboxID: "i", Type: "t", Status: StatusDelivered, Attempts: 7, CycleStart: 5, LastAt: 1, DeliveredVia: ChannelWebhook, AwaitingAck: true, AckedAt: -3})
	for _, bad := range [][]byte{nil, {9}, {stateFormat}, {stateFormat, 5, 'a'}, append(encodeState(EventState{}), 0)} {
		if _, err := decodeState(bad); err == nil {
			t.Fatalf("decoded %v", bad)
		}
	}
}
