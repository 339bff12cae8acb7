package jsstore

import (
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/internal/natstest"
	"github.com/mailwire/mailwire/store"
)

func TestSubjectHeader(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes: cut inside a character
	for _, c := range []struct {
		subject, want string
		whole         bool
	}{
		{"Order 7", "Order 7", true},
		{"", "", true},
		{"  edges\tand\r\nbreaks ", "  edges\tand\r\nbreaks ", true},
		{"Größe ✓ \x00\xff", "Größe ✓ \x00\xff", true},
		{long, strings.Repeat("é", maxSubjectHeader/2), false},
		{strings.Repeat("a", maxSubjectHeader), strings.Repeat("a", maxSubjectHeader), true},
	} {
		h := subjectHeader(c.subject)
		if strings.ContainsAny(h, "\r\n") || len(h) > 4*maxSubjectHeader+3 {
			t.Errorf("header of %q: %q", c.subject, h)
		}
		got, whole := parseSubjectHeader(h)
		if got != c.want || whole != c.whole {
			t.Errorf("subject %q: header %q reads %q, %v; want %q, %v", c.subject, h, got, whole, c.want, c.whole)
		}
	}
	if _, whole := parseSubjectHeader(""); whole {
		t.Error("a missing header must not read as a whole subject")
	}
}

// The subject header goes through NATS as it was set (non-ASCII, edge
// spaces), so a thread list needs no message record.
func TestThreadSubjectThroughNATS(t *testing.T) {
	nc, err := natstest.Start(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Shutdown()
	s, err := Open(Options{URL: nc.URL(), Node: "t", Replicas: 1, ConnectTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acc, inbox := ids.New(ids.Account), ids.New(ids.Inbox)
	subject := " Größe ✓ Bestellung "
	m := store.Message{ID: ids.New(ids.Message), InboxID: inbox, AccountID: acc, ThreadID: ids.New(ids.Thread), Subject: subject, ReceivedAt: time.Now()}
	err = s.Append([]string{acc}, func(evtIDs []string) ([]store.Inbound, error) {
		head, tail := s.RenderEvent(evtIDs[0], &m)
		return []store.Inbound{{Message: m, NewThread: true, ThreadRefs: []string{"<x@example.com>"},
			Event: store.Event{ID: evtIDs[0], AccountID: acc, InboxID: inbox, Type: "message.received", MessageID: m.ID, Head: head, Tail: tail}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := s.idx.threadOf(m.ThreadID)
	if !ok || !v.subjectWhole || v.subject != subject || v.count != 1 {
		t.Fatalf("indexed thread %+v, want subject %q from the header", v, subject)
	}
	ts, total, err := s.ListThreads(inbox, store.ThreadFilter{}, store.Page{Limit: 10})
	if err != nil || total != 1 || len(ts) != 1 || ts[0].Subject != subject || ts[0].IsRead || ts[0].MessageCount != 1 {
		t.Fatalf("ListThreads: %+v, %d, %v", ts, total, err)
	}
	if err := s.MarkThreadRead(acc, m.ThreadID, true); err != nil {
		t.Fatal(err)
	}
	if th, err := s.GetThread(acc, m.ThreadID); err != nil || !th.IsRead {
		t.Fatalf("GetThread after marking read: %+v, %v", th, err)
	}
	if _, err := s.GetThread(ids.New(ids.Account), m.ThreadID); err != store.ErrNotFound {
		t.Fatalf("another account's GetThread: %v", err)
	}
}
