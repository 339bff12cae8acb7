package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/store"
)

// A message sent with net/smtp is stored as sent, with one pending event,
// and the reply names the stored message.
func TestSendMailStoresMessage(t *testing.T) {
	e := newEnv(t, envOptions{})
	msg := string(readFixture(t, "plain.eml"))
	if err := smtp.SendMail(e.srv.Addr(), nil, "alice@example.com", []string{"agent@localhost"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	m := e.only("agent")
	want := store.Message{
		InboxID: e.inboxes["agent"].ID, AccountID: e.account.ID, RFCMessageID: "<plain-1@test.example>",
		From: "Alice Example <alice@example.com>", To: "agent@localhost", Subject: "Plain hello",
		BodyText: "Hello agent,\n\nthis is a plain message.\n.a line that starts with a dot survives dot-stuffing\n-- \nAlice\n",
		RawSize:  len(msg),
	}
	if m.InboxID != want.InboxID || m.AccountID != want.AccountID || m.RFCMessageID != want.RFCMessageID ||
		m.From != want.From || m.To != want.To || m.Subject != want.Subject || m.BodyText != want.BodyText || m.RawSize != want.RawSize {
		t.Fatalf("stored %+v\nwant    %+v", m, want)
	}
	raw, err := e.db.GetRaw(e.account.ID, m.ID)
	if err != nil || string(raw) != msg {
		t.Fatalf("raw = %q, %v; want the bytes sent", raw, err)
	}
	evts := e.events("agent")
	if len(evts) != 1 {
		t.Fatalf("%d events, want 1", len(evts))
	}
	ev, err := e.db.GetEvent(evts[0].ID)
	if err != nil || ev.Type != ingest.EventMessageReceived || !strings.Contains(string(ev.Tail), m.ID) {
		t.Fatalf("event %+v, %v: want message.received naming %s", ev, err, m.ID)
	}
	if got := e.metric("mailwire_smtp_messages_accepted_total"); got != 1 {
		t.Errorf("accepted = %v, want 1", got)
	}
	if got := e.metric("mailwire_smtp_received_bytes_total"); got != float64(len(msg)) {
		t.Errorf("bytes = %v, want %d", got, len(msg))
	}

	// The raw client sees the reply text.
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	r := c.data(message("second", "body"), "250 2.0.0 OK: stored as msg_")
	if id := strings.TrimPrefix(r, "250 2.0.0 OK: stored as "); e.messages("agent")[0].ID != id {
		t.Errorf("reply %q does not name the stored message %s", r, e.messages("agent")[0].ID)
	}
	c.cmd("QUIT", "221 ")
}

// Invariant 1 over SMTP: once the client has read 250, the message and its
// event survive a crash (a clone of the file system holding only synced
// data).
func TestAcknowledgedMessageSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := newEnv(t, envOptions{fs: fs, dir: "/db"})
	c := hello(t, e.srv.Addr())
	for i := range 5 {
		c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<agent@localhost>", "250 ")
		r := c.data(message(fmt.Sprintf("durable %d", i), "body"), "250 ")
		id := strings.TrimPrefix(r, "250 2.0.0 OK: stored as ")

		crashed, err := store.Open(store.Options{Dir: "/db", FS: fs.CrashClone(vfs.CrashCloneCfg{})})
		if err != nil {
			t.Fatal(err)
		}
		m, err := crashed.GetMessage(e.account.ID, id)
		evts, _, lerr := crashed.ListEvents(e.account.ID, store.EventFilter{InboxID: e.inboxes["agent"].ID}, store.Page{Limit: 100})
		if cerr := crashed.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil || m.Subject != fmt.Sprintf("durable %d", i) {
			t.Fatalf("after a crash, message %s: %+v, %v", id, m, err)
		}
		if lerr != nil || len(evts) != i+1 {
			t.Fatalf("after a crash: %d events (%v), want %d", len(evts), lerr, i+1)
		}
	}
	c.cmd("QUIT", "221 ")
}

// RCPT TO: existing inboxes in any case and with +tags are accepted;
// unknown mailboxes, impossible names and other domains get 550 5.1.1.
func TestRecipients(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	for _, tc := range []struct{ rcpt, want string }{
		{"<nobody@localhost>", "550 5.1.1 "},
		{"<agent@example.com>", "550 5.1.1 "},
		{"<agent@localhost.example>", "550 5.1.1 "},
		{"<a@localhost>", "550 5.1.1 "},             // too short to be a mailbox name
		{"<\"agent x\"@localhost>", "550 5.1.1 "},   // quoted local part with a space
		{"<agent+a b@localhost>", "501 "},           // go-smtp: not a path
		{"<\"agent+a b\"@localhost>", "550 5.1.1 "}, // a tag we would not record
		{"<AGENT@LocalHost>", "250 "},
		{"<agent@localhost.>", "250 "},
	} {
		c.cmd("RCPT TO:"+tc.rcpt, tc.want)
	}
	c.data(message("case", "body"), "250 ")
	if m := e.only("agent"); m.To != "agent@localhost" {
		t.Errorf("To = %q, want the canonical address", m.To)
	}
	if got := e.rejected(reasonUnknownRecipient); got != 4 {
		t.Errorf("unknown_recipient = %v, want 4", got)
	}
	if got := e.rejected(reasonOtherDomain); got != 2 {
		t.Errorf("other_domain = %v, want 2", got)
	}
}

// A +tag is kept in the stored To (the mailbox part lower-cased, the tag
// as sent), through net/smtp.
func TestTagKeptInTo(t *testing.T) {
	e := newEnv(t, envOptions{})
	err := smtp.SendMail(e.srv.Addr(), nil, "alice@example.com", []string{"Agent+Orders-42@LOCALHOST"}, []byte(message("tagged", "body")))
	if err != nil {
		t.Fatal(err)
	}
	if m := e.only("agent"); m.To != "agent+Orders-42@localhost" {
		t.Fatalf("To = %q, want agent+Orders-42@localhost", m.To)
	}
}

// An unknown recipient through net/smtp fails the send with 550 and
// stores nothing.
func TestSendMailUnknownRecipient(t *testing.T) {
	e := newEnv(t, envOptions{})
	err := smtp.SendMail(e.srv.Addr(), nil, "alice@example.com", []string{"nobody@localhost"}, []byte(message("x", "y")))
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("err = %v, want 550", err)
	}
	if n := len(e.messages("agent")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// Several recipients: one DeliverRaw call stores one message and one event
// per inbox (same receive time, same RFC Message-ID); the refused
// recipient changes nothing.
func TestMultipleRecipients(t *testing.T) {
	e := newEnv(t, envOptions{mailboxes: []string{"agent", "billing", "support"}})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.cmd("RCPT TO:<nobody@localhost>", "550 5.1.1 ")
	c.cmd("RCPT TO:<billing+invoices@localhost>", "250 ")
	c.data(message("to two", "body", "Message-ID: <multi-1@test.example>"), "250 2.0.0 OK: stored as msg_")

	a, b := e.only("agent"), e.only("billing")
	if n := len(e.messages("support")); n != 0 {
		t.Fatalf("support got %d messages", n)
	}
	if a.ID == b.ID || a.RFCMessageID != "<multi-1@test.example>" || b.RFCMessageID != a.RFCMessageID {
		t.Fatalf("messages %s/%s with ids %s/%s", a.ID, b.ID, a.RFCMessageID, b.RFCMessageID)
	}
	if !a.ReceivedAt.Equal(b.ReceivedAt) {
		t.Errorf("received at %v and %v: not one DeliverRaw call", a.ReceivedAt, b.ReceivedAt)
	}
	if a.To != "agent@localhost" || b.To != "billing+invoices@localhost" {
		t.Errorf("To = %q, %q", a.To, b.To)
	}
	if len(e.events("agent")) != 1 || len(e.events("billing")) != 1 || len(e.events("support")) != 0 {
		t.Errorf("events: agent %d, billing %d, support %d; want 1, 1, 0",
			len(e.events("agent")), len(e.events("billing")), len(e.events("support")))
	}
	if got := e.metric("mailwire_smtp_messages_accepted_total"); got != 1 {
		t.Errorf("accepted = %v, want 1 (one message, two inboxes)", got)
	}
}

// The same inbox named twice (with two tags) gets one message, addressed
// as first named, and one event.
func TestSameInboxTwice(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent+one@localhost>", "250 ")
	c.cmd("RCPT TO:<agent+two@localhost>", "250 ")
	c.cmd("RCPT TO:<AGENT@localhost>", "250 ")
	c.data(message("twice", "body"), "250 2.0.0 OK: stored as msg_")
	if m := e.only("agent"); m.To != "agent+one@localhost" {
		t.Errorf("To = %q, want the first address", m.To)
	}
	if n := len(e.events("agent")); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

// More than MaxRecipients RCPTs get 452 4.5.3 (duplicates count); the
// accepted ones still get the message, and the next transaction starts
// from zero.
func TestMaxRecipients(t *testing.T) {
	e := newEnv(t, envOptions{
		mailboxes: []string{"agent", "billing", "support"},
		cfg:       func(c *Config) { c.MaxRecipients = 3 },
	})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.cmd("RCPT TO:<agent+x@localhost>", "250 ")
	c.cmd("RCPT TO:<billing@localhost>", "250 ")
	c.cmd("RCPT TO:<support@localhost>", "452 4.5.3 ")
	c.data(message("capped", "body"), "250 ")
	if len(e.messages("agent")) != 1 || len(e.messages("billing")) != 1 || len(e.messages("support")) != 0 {
		t.Fatal("the message did not go to exactly the accepted inboxes")
	}
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<support@localhost>", "250 ")
	c.data(message("next", "body"), "250 ")
	if got := e.rejected(reasonTooManyRecipients); got != 1 {
		t.Errorf("too_many_recipients = %v, want 1", got)
	}
}

// EHLO advertises what the issue asks for, and no STARTTLS without a key
// pair.
func TestEHLOExtensions(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.MaxMessageSize = 4096; c.Hostname = "mx.test" }})
	c := dial(t, e.srv.Addr())
	c.expect("220 mx.test ESMTP")
	r := c.cmd("EHLO client.test", "250 ")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 4096", "ENHANCEDSTATUSCODES"} {
		if !strings.Contains(r, "250-"+ext+"\n") && !strings.HasSuffix(r, "250 "+ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, r)
		}
	}
	if strings.Contains(r, "STARTTLS") {
		t.Errorf("STARTTLS advertised without a key pair:\n%s", r)
	}
}

// Size limit: SIZE= over it is refused at MAIL; a DATA over it gets 552
// once the client finished sending, nothing is stored, and the connection
// serves the next transaction.
func TestMessageSizeLimit(t *testing.T) {
	const max = 4096
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.MaxMessageSize = max }})
	c := hello(t, e.srv.Addr())
	c.cmd(fmt.Sprintf("MAIL FROM:<alice@example.com> SIZE=%d", max+1), "552 5.3.4 ")
	c.cmd(fmt.Sprintf("MAIL FROM:<alice@example.com> SIZE=%d", max), "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")

	sized := func(n int) string {
		m := message("sized", "")
		for len(m) < n {
			line := strings.Repeat("x", min(78, n-len(m)-2))
			m += line + "\r\n"
		}
		if len(m) != n {
			t.Fatalf("BUG: built %d bytes, want %d", len(m), n)
		}
		return m
	}
	// go-smtp's reader fails once it has read MaxMessageBytes, so a message
	// of exactly max bytes is refused too: the largest accepted is max-1.
	c.data(sized(max+1000), "552 5.3.4 ")
	for _, tc := range []struct {
		size int
		want string
	}{
		{max + 1, "552 5.3.4 "},
		{max, "552 5.3.4 "},
		{max - 1, "250 "},
	} {
		c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<agent@localhost>", "250 ")
		c.data(sized(tc.size), tc.want)
	}
	if m := e.only("agent"); m.RawSize != max-1 {
		t.Fatalf("stored %d bytes, want %d", m.RawSize, max-1)
	}
	if got := e.rejected(reasonTooLarge); got != 3 {
		t.Errorf("too_large = %v, want 3 (SIZE= refusals are go-smtp's and not counted)", got)
	}
}

// PIPELINING: a whole transaction in one write gets its replies in order.
func TestPipelining(t *testing.T) {
	e := newEnv(t, envOptions{mailboxes: []string{"agent", "billing"}})
	c := hello(t, e.srv.Addr())
	c.send(
		"MAIL FROM:<alice@example.com>",
		"RCPT TO:<agent@localhost>",
		"RCPT TO:<nobody@localhost>",
		"RCPT TO:<billing@localhost>",
		"DATA",
	)
	for _, want := range []string{"250 ", "250 ", "550 5.1.1 ", "250 ", "354 "} {
		c.expect(want)
	}
	// The message, then RSET, a second transaction and QUIT, all at once.
	c.write(dotStuff(message("pipelined", "body")) +
		"RSET\r\nMAIL FROM:<>\r\nRCPT TO:<agent@localhost>\r\nDATA\r\n" +
		dotStuff(message("second", "body")) + "QUIT\r\n")
	for _, want := range []string{"250 2.0.0 OK: stored as ", "250 ", "250 ", "250 ", "354 ", "250 2.0.0 OK: stored as ", "221 "} {
		c.expect(want)
	}
	c.expectClosed()
	if len(e.messages("agent")) != 2 || len(e.messages("billing")) != 1 {
		t.Fatalf("agent %d, billing %d messages; want 2, 1", len(e.messages("agent")), len(e.messages("billing")))
	}
}

// BDAT (CHUNKING, which go-smtp always advertises) stores like DATA.
func TestBDAT(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	msg := message("chunked", "first half, second half")
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.write(fmt.Sprintf("BDAT %d\r\n%s", 20, msg[:20]))
	c.expect("250 ")
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-20, msg[20:]))
	c.expect("250 2.0.0 OK: stored as msg_")
	if m := e.only("agent"); m.Subject != "chunked" || m.RawSize != len(msg) {
		t.Fatalf("stored %+v", m)
	}
}

// Data that is not a mail message at all gets 554 5.6.0 and nothing is
// stored.
func TestNotAMessage(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.data("just some text, no header section\r\n", "554 5.6.0 ")
	c.cmd("NOOP", "250 ")
	if n := len(e.messages("agent")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	if got := e.rejected(reasonNotMessage); got != 1 {
		t.Errorf("invalid_message = %v, want 1", got)
	}
}

// A DATA line longer than go-smtp's limit ends the connection after a 500
// and stores nothing.
func TestDataLineTooLong(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.data(message("long", strings.Repeat("y", maxLineLength+10)), "500 5.4.0 ")
	c.expectClosed()
	if n := len(e.messages("agent")); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	if got := e.rejected(reasonLineTooLong); got != 1 {
		t.Errorf("line_too_long = %v, want 1", got)
	}
}

// The per-IP cap: the cap+1-th connection from one address gets 421 4.7.0
// and is closed; another address is not affected; a closed connection
// frees its slot.
func TestConnectionsPerIP(t *testing.T) {
	const limit = 3
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.MaxConnsPerIP = limit }})
	var held []*client
	for range limit {
		c := dialFrom(t, "127.0.0.1", e.srv.Addr())
		c.expect("220 ")
		held = append(held, c)
	}
	over := dialFrom(t, "127.0.0.1", e.srv.Addr())
	over.expect("421 4.7.0 ")
	over.expectClosed()

	other := dialFrom(t, "127.0.0.2", e.srv.Addr())
	other.expect("220 ")
	other.cmd("EHLO other.test", "250 ")

	if got := e.metric("mailwire_smtp_sessions_open"); got != limit+1 {
		t.Errorf("sessions_open = %v, want %d", got, limit+1)
	}
	if got := e.rejected(reasonTooManyConnsIP); got != 1 {
		t.Errorf("too_many_connections_ip = %v, want 1", got)
	}

	held[0].cmd("QUIT", "221 ")
	held[0].expectClosed()
	waitFor(t, "the slot to be released", func() bool { return e.metric("mailwire_smtp_sessions_open") == limit })
	again := dialFrom(t, "127.0.0.1", e.srv.Addr())
	again.expect("220 ")
}

// The global cap refuses with 421 4.3.2 whoever asks.
func TestConnectionsTotal(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.MaxConns = 2 }})
	dialFrom(t, "127.0.0.1", e.srv.Addr()).expect("220 ")
	dialFrom(t, "127.0.0.2", e.srv.Addr()).expect("220 ")
	over := dialFrom(t, "127.0.0.3", e.srv.Addr())
	over.expect("421 4.3.2 ")
	over.expectClosed()
	if got := e.rejected(reasonTooManyConns); got != 1 {
		t.Errorf("too_many_connections = %v, want 1", got)
	}
}

// A client that says nothing is dropped at the command timeout, before and
// after EHLO.
func TestIdleClientDropped(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.CommandTimeout = 150 * time.Millisecond }})
	silent := dial(t, e.srv.Addr())
	silent.expect("220 ")
	start := time.Now()
	silent.expect("421 4.4.2 ")
	silent.expectClosed()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("dropped after %v, before the timeout", d)
	}

	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("421 4.4.2 ")
	c.expectClosed()
	waitFor(t, "no open sessions", func() bool { return e.metric("mailwire_smtp_sessions_open") == 0 })
}

// During DATA, a client that pauses longer than the command timeout is
// dropped with 421 4.4.2; one that keeps trickling bytes is dropped at the
// whole-DATA deadline. Neither stores anything.
func TestDataTimeouts(t *testing.T) {
	t.Run("pause", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *Config) { c.CommandTimeout = 200 * time.Millisecond; c.DataTimeout = time.Minute }})
		c := hello(t, e.srv.Addr())
		c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<agent@localhost>", "250 ")
		c.cmd("DATA", "354 ")
		c.write("Subject: half a message\r\n")
		c.expect("421 4.4.2 ")
		c.expectClosed()
		if n := len(e.messages("agent")); n != 0 {
			t.Fatalf("%d messages stored", n)
		}
		if got := e.rejected(reasonDataTimeout); got != 1 {
			t.Errorf("data_timeout = %v, want 1", got)
		}
	})
	t.Run("trickle", func(t *testing.T) {
		e := newEnv(t, envOptions{cfg: func(c *Config) { c.CommandTimeout = 2 * time.Second; c.DataTimeout = 300 * time.Millisecond }})
		c := hello(t, e.srv.Addr())
		c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<agent@localhost>", "250 ")
		c.cmd("DATA", "354 ")
		start := time.Now()
		// A byte every 20ms, well within the pause limit, until refused.
		done := make(chan struct{})
		trickled := make(chan struct{})
		go func() {
			defer close(trickled)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if _, err := c.conn.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		c.expect("421 4.4.2 ")
		close(done)
		<-trickled
		if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
			t.Errorf("refused after %v; want about the 300ms DATA deadline", d)
		}
		c.expectClosed()
		if n := len(e.messages("agent")); n != 0 {
			t.Fatalf("%d messages stored", n)
		}
	})
}

// A storage error answers 451 4.3.0 and stores nothing. The inbox of one
// of two recipients is deleted between RCPT and DATA: the store refuses
// the whole batch, so the other inbox gets nothing either.
func TestStorageErrorInboxDeleted(t *testing.T) {
	e := newEnv(t, envOptions{mailboxes: []string{"agent", "billing"}})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.cmd("RCPT TO:<billing@localhost>", "250 ")
	if _, err := e.db.DeleteInbox(e.account.ID, e.inboxes["billing"].ID); err != nil {
		t.Fatal(err)
	}
	c.data(message("orphan", "body"), "451 4.3.0 ")
	if n := len(e.messages("agent")); n != 0 {
		t.Fatalf("agent has %d messages after a refused batch", n)
	}
	if n := len(e.events("agent")); n != 0 {
		t.Fatalf("agent has %d events after a refused batch", n)
	}
	if got := e.rejected(reasonStorage); got != 1 {
		t.Errorf("storage_error = %v, want 1", got)
	}
	// The retry the 451 asks for: billing is now unknown, agent gets it.
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.cmd("RCPT TO:<billing@localhost>", "550 5.1.1 ")
	c.data(message("orphan", "body"), "250 ")
	e.only("agent")
}

// An idle connection at Shutdown is told 421 4.3.2 and closed; a
// connection in a transaction finishes it (its 250 means stored), is then
// told 421 and closed; Shutdown returns nil once both are gone and later
// calls return the same.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, envOptions{})
	idle := hello(t, e.srv.Addr())
	busy := hello(t, e.srv.Addr())
	busy.cmd("MAIL FROM:<alice@example.com>", "250 ")
	busy.cmd("RCPT TO:<agent@localhost>", "250 ")

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(t.Context()) }()
	idle.expect("421 4.3.2 ")
	idle.expectClosed()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.Dial("tcp", e.srv.Addr())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a transaction was open", err)
	default:
	}
	busy.data(message("last one", "body"), "250 2.0.0 OK: stored as ")
	busy.expect("421 4.3.2 ")
	busy.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := e.srv.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	e.only("agent")
	if got := e.metric("mailwire_smtp_sessions_open"); got != 0 {
		t.Errorf("sessions_open = %v after shutdown", got)
	}
}

// A transaction that does not finish before Shutdown's context ends is
// cut: Shutdown returns the context's error and the connection is closed.
func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	e.shutdownErrOK = true
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := e.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the context's deadline error", err)
	}
	c.expectClosed()
	if err2 := e.srv.Shutdown(t.Context()); err2 != err {
		t.Fatalf("second Shutdown = %v, want the first result %v", err2, err)
	}
}

// New reports every configuration problem at once.
func TestConfigValidation(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, err := New(Config{
		Domain:         "other.example",
		MaxMessageSize: -1,
		MaxRecipients:  -2,
		MaxConnsPerIP:  -3,
		CommandTimeout: -time.Second,
		TLSCertFile:    "cert.pem",
	}, e.db, e.in)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"Addr is required", `Domain "other.example" differs`, "MaxMessageSize -1",
		"MaxRecipients -2", "MaxConnsPerIP -3", "CommandTimeout -1s", "TLSCertFile and TLSKeyFile go together"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	_, err = New(Config{Addr: "127.0.0.1:0", TLSCertFile: "/nonexistent/cert.pem", TLSKeyFile: "/nonexistent/key.pem"}, e.db, e.in)
	if err == nil || !strings.Contains(err.Error(), "cannot load TLS key pair") {
		t.Errorf("missing key pair: %v", err)
	}
}

// Message bodies and subjects never reach the logs, even at debug level.
func TestBodiesNotLogged(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.data(message("subject-canary-1", "body-canary-2"), "250 ")
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	c.cmd("RCPT TO:<agent@localhost>", "250 ")
	c.data("body-canary-3 not a message\r\n", "554 ")
	logs := e.logs.String()
	if !strings.Contains(logs, "message stored") {
		t.Fatalf("no log of the stored message:\n%s", logs)
	}
	for _, canary := range []string{"canary-1", "canary-2", "canary-3"} {
		if strings.Contains(logs, canary) {
			t.Errorf("logs contain %s:\n%s", canary, logs)
		}
	}
}

// A connection probing for addresses is closed after maxRefusedRecipients
// refusals (accepted recipients do not count; a new transaction does not
// reset the count).
func TestTooManyRefusedRecipients(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := hello(t, e.srv.Addr())
	c.cmd("MAIL FROM:<alice@example.com>", "250 ")
	for i := range maxRefusedRecipients {
		if i == maxRefusedRecipients/2 {
			c.cmd("RCPT TO:<agent@localhost>", "250 ")
			c.cmd("RSET", "250 ")
			c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		}
		c.cmd(fmt.Sprintf("RCPT TO:<guess%d@localhost>", i), "550 5.1.1 ")
	}
	c.cmd("RCPT TO:<guess-last@localhost>", "421 4.7.0 ")
	c.expectClosed()
	if got := e.rejected(reasonTooManyRefused); got != 1 {
		t.Errorf("too_many_refused = %v, want 1", got)
	}
	if got := e.rejected(reasonUnknownRecipient); got != maxRefusedRecipients {
		t.Errorf("unknown_recipient = %v, want %d", got, maxRefusedRecipients)
	}
}

// A client that keeps sending commands but never reads the replies is
// closed once a reply cannot be written within the command timeout (go-smtp
// alone would ignore the failed write and keep reading).
func TestClientNotReadingIsClosed(t *testing.T) {
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.CommandTimeout = 200 * time.Millisecond }})
	c := dial(t, e.srv.Addr())
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	writerDone := make(chan error, 1)
	go func() {
		batch := []byte(strings.Repeat("NOOP\r\n", 1000))
		deadline := time.Now().Add(testTimeout)
		for time.Now().Before(deadline) {
			_ = c.conn.SetWriteDeadline(time.Now().Add(testTimeout))
			if _, err := c.conn.Write(batch); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- errors.New("the server still reads after the test timeout")
	}()
	waitFor(t, "the connection to be closed", func() bool { return e.metric("mailwire_smtp_sessions_open") == 0 })
	if err := <-writerDone; err != nil && strings.Contains(err.Error(), "still reads") {
		t.Fatal(err)
	}
}
