package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/internal/ids"
)

// reply is what ingest stores for a message in an existing thread.
func reply(in Inbox, thread, subject string, now time.Time) Inbound {
	it := inbound(in, subject, now)
	it.Message.ThreadID = thread
	return it
}

func store1(t *testing.T, db *DB, items ...Inbound) {
	t.Helper()
	if err := db.StoreInbound(items); err != nil {
		t.Fatal(err)
	}
}

func threadIDs(ts []Thread) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// Threads are derived from their messages: latest activity first, the
// first message's subject, counts, read marks that a new message undoes.
func TestThreadsFromMessages(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	acc := mustAccount(t, db)
	other, _, _, _ := db.CreateAccount("other")
	in := newInbox(t, db, acc, "box")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	a := inbound(in, "Order 1", at(0))
	a.NewThread = true
	b := inbound(in, "Hello", at(1))
	b.NewThread = true
	store1(t, db, a, b)
	thrA, thrB := a.Message.ThreadID, b.Message.ThreadID
	store1(t, db, reply(in, thrA, "Re: Order 1", at(2)))
	store1(t, db, reply(in, thrA, "Re: Re: Order 1", at(3)))

	ts, total, err := db.ListThreads(in.ID, ThreadFilter{}, Page{Limit: 10})
	if err != nil || total != 2 || len(ts) != 2 {
		t.Fatalf("threads: %v %d %v", ts, total, err)
	}
	if ts[0].ID != thrA || ts[1].ID != thrB {
		t.Fatalf("order %v, want [%s %s] (latest activity first)", threadIDs(ts), thrA, thrB)
	}
	ta := ts[0]
	if ta.Subject != "Order 1" || ta.MessageCount != 3 || !ta.LastMessageAt.Equal(at(3)) || !ta.CreatedAt.Equal(at(0)) || ta.IsRead || ta.InboxID != in.ID {
		t.Fatalf("thread A: %+v", ta)
	}
	if ts[1].MessageCount != 1 || !ts[1].LastMessageAt.Equal(at(1)) {
		t.Fatalf("thread B: %+v", ts[1])
	}

	// A reply to B moves it to the front.
	store1(t, db, reply(in, thrB, "Re: Hello", at(4)))
	ts, _, _ = db.ListThreads(in.ID, ThreadFilter{}, Page{Limit: 10})
	if ts[0].ID != thrB || ts[0].MessageCount != 2 {
		t.Fatalf("after a reply to B: %+v", ts)
	}

	// Read marks and the filter.
	yes, no := true, false
	if err := db.MarkThreadRead(acc, thrA, true); err != nil {
		t.Fatal(err)
	}
	if ts, n, _ := db.ListThreads(in.ID, ThreadFilter{IsRead: &yes}, Page{Limit: 10}); n != 1 || ts[0].ID != thrA || !ts[0].IsRead {
		t.Fatalf("is_read=true: %+v", ts)
	}
	if ts, n, _ := db.ListThreads(in.ID, ThreadFilter{IsRead: &no}, Page{Limit: 10}); n != 1 || ts[0].ID != thrB {
		t.Fatalf("is_read=false: %+v", ts)
	}
	if got, _ := db.GetThread(acc, thrA); !got.IsRead || got.MessageCount != 3 {
		t.Fatalf("GetThread after marking read: %+v", got)
	}
	store1(t, db, reply(in, thrA, "Re: more", at(5)))
	if got, _ := db.GetThread(acc, thrA); got.IsRead || got.MessageCount != 4 {
		t.Fatalf("a new message must make the thread unread: %+v", got)
	}
	_ = db.MarkThreadRead(acc, thrA, true)
	_ = db.MarkThreadRead(acc, thrA, false)
	if got, _ := db.GetThread(acc, thrA); got.IsRead {
		t.Fatalf("marked unread: %+v", got)
	}

	// Messages oldest first, paged.
	ms, n, err := db.ThreadMessages(acc, thrA, Page{Limit: 2, Offset: 1})
	if err != nil || n != 4 || len(ms) != 2 || ms[0].Subject != "Re: Order 1" || ms[1].Subject != "Re: Re: Order 1" {
		t.Fatalf("thread messages: %d %v %v", n, ms, err)
	}
	// Pagination of threads.
	if ts, n, _ := db.ListThreads(in.ID, ThreadFilter{}, Page{Limit: 1, Offset: 1}); n != 2 || len(ts) != 1 || ts[0].ID != thrB {
		t.Fatalf("page 2: %+v", ts)
	}

	// Another account sees none of it.
	unknown := ids.New(ids.Thread)
	for _, id := range []string{thrA, unknown} {
		if _, err := db.GetThread(other.ID, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetThread(other, %s): %v", id, err)
		}
		if _, _, err := db.ThreadMessages(other.ID, id, Page{Limit: 10}); !errors.Is(err, ErrNotFound) {
			t.Errorf("ThreadMessages(other, %s): %v", id, err)
		}
		if err := db.MarkThreadRead(other.ID, id, true); !errors.Is(err, ErrNotFound) {
			t.Errorf("MarkThreadRead(other, %s): %v", id, err)
		}
	}
}

// Messages of one thread stored concurrently are all counted: ingest
// writes no aggregate that concurrent batches could both overwrite.
func TestThreadConcurrentIngest(t *testing.T) {
	db := openMem(t, vfs.NewMem())
	defer db.Close()
	acc := mustAccount(t, db)
	in := newInbox(t, db, acc, "box")
	first := inbound(in, "first", time.Now())
	first.NewThread = true
	store1(t, db, first)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.StoreInbound([]Inbound{reply(in, first.Message.ThreadID, fmt.Sprint("r", i), time.Now())}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	th, err := db.GetThread(acc, first.Message.ThreadID)
	if err != nil || th.MessageCount != n+1 || th.Subject != "first" {
		t.Fatalf("thread %+v %v, want %d messages", th, err, n+1)
	}
}

// A database written before threads were indexed gets its thread keys
// when it is opened; until then (read-only) threads come from the
// message records. B's record, with a large body, is in chunks.
func TestThreadsBackfill(t *testing.T) {
	smallTables(t)
	fs := vfs.NewMem()
	db := openMem(t, fs)
	acc := mustAccount(t, db)
	in := newInbox(t, db, acc, "box")
	t0 := time.Now().Add(-time.Hour)
	a := inbound(in, "A", t0)
	b := inbound(in, "B", t0.Add(time.Second))
	b.Raw, b.Message.BodyText = payload(ingestFromBytes, 2), strings.Repeat("b", chunkFromBytes)
	store1(t, db, a, b, reply(in, a.Message.ThreadID, "Re: A", t0.Add(2*time.Second)))
	if err := db.MarkThreadRead(acc, b.Message.ThreadID, true); err != nil {
		t.Fatal(err)
	}
	// Make it look like the old layout: no thread records or lists, empty
	// index values, no marker.
	bt := db.pdb.NewBatch()
	for _, p := range []string{pThreadInfo, pThreadMessage} {
		_ = bt.DeleteRange([]byte(p), prefixEnd([]byte(p)), nil)
	}
	_ = db.scan(prefixKey(pInboxMessage+in.ID), false, func(k, _ []byte) bool { _ = bt.Set(append([]byte(nil), k...), nil, nil); return true })
	_ = bt.Delete(threadsIndexed, nil)
	if err := db.commit(bt); err != nil {
		t.Fatal(err)
	}
	check := func(what string, db *DB) {
		t.Helper()
		ts, total, err := db.ListThreads(in.ID, ThreadFilter{}, Page{Limit: 10})
		if err != nil || total != 2 || ts[0].ID != a.Message.ThreadID || ts[0].MessageCount != 2 || ts[0].Subject != "A" ||
			ts[1].ID != b.Message.ThreadID || !ts[1].IsRead {
			t.Fatalf("%s: %+v %d %v", what, ts, total, err)
		}
	}
	check("old layout", db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMem(t, fs)
	defer db.Close()
	check("after the backfill", db)
	ms, n, err := db.ThreadMessages(acc, a.Message.ThreadID, Page{Limit: 10})
	if err != nil || n != 2 || ms[0].Subject != "A" || ms[1].Subject != "Re: A" {
		t.Fatalf("thread messages after the backfill: %v %d %v", ms, n, err)
	}
	if ok, _ := db.has(threadsIndexed); !ok {
		t.Fatal("no marker after the backfill")
	}
}
