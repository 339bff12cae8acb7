package engine_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// PROTOCOL.md §2: frames within the rate limit are answered, in order,
// before the 4029 close. (31 back-to-back pings used to get 0-3 pongs; 31
// subscribes 12 subscribed frames: the close overtook the commands.)
func TestWSBurstIsAnsweredBeforeTheClose(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	for _, tc := range []struct{ frame, answer string }{
		{`{"type":"ping"}`, "pong"},
		{`{"type":"subscribe"}`, "subscribed"},
	} {
		raw := rawUpgrade(t, s, acc.Key)
		var burst []byte
		for i := 0; i < 31; i++ {
			burst = append(burst, clientFrame(true, 0, 0x1, true, []byte(tc.frame))...)
		}
		if _, err := raw.Write(burst); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 30; i++ {
			expectRawText(t, raw, `"type":"`+tc.answer+`"`)
		}
		expectRawText(t, raw, "rate limited")
		expectRawClose(t, raw, 4029)
	}
}

// PROTOCOL.md §8: a connection whose pong is late gets a close frame
// (1001) before the socket goes; it used to be dropped without one (1006).
func TestWSHeartbeatTimeoutSendsAClose(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) {
		c.WS.PingInterval, c.WS.PongTimeout = 50*time.Millisecond, 100*time.Millisecond
	})
	acc := s.NewAccount("a")
	raw := rawUpgrade(t, s, acc.Key) // reads, never answers pings
	for {
		op, p := serverFrame(t, raw)
		if op == 0x9 {
			continue // the pings it ignores
		}
		if op != 0x8 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1001 {
			t.Fatalf("frame op %d %q, want a 1001 close", op, p)
		}
		break
	}
}

// PROTOCOL.md §8: a slow consumer is closed with 1008, the close frame
// queued behind its backlog: a client that resumes reading in time finds
// it there. (It used to be dropped without a close frame.)
func TestWSSlowConsumerGetsA1008(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.MaxPending = 256 << 10 })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	raw := rawUpgrade(t, s, acc.Key)
	writeClientFrame(t, raw, 0x1, []byte(`{"type":"subscribe"}`))
	expectRawText(t, raw, "subscribed")
	body := strings.Repeat("a long line of text. ", 3000) // ~60 KiB per event: a backlog builds up first
	n := 0
	start := time.Now()
	testserver.WaitFor(t, 60*time.Second, "the slow consumer to be closed", func() bool {
		n++
		s.MustJSON("POST", "/v1/inboxes/"+in+"/inbound", acc.Key, map[string]string{"from": "a@b.c", "subject": "x", "text": body}, http.StatusAccepted, nil)
		_, m, _ := s.Do("GET", "/metrics", "", nil)
		return bytes.Contains(m, []byte("mailwire_ws_slow_consumers_total 1"))
	})
	t.Logf("%d events in %s", n, time.Since(start))
	// Read the backlog: the last frame is the close.
	for i := 0; ; i++ {
		op, p := serverFrame(t, raw)
		if op == 0x8 {
			if len(p) < 2 || binary.BigEndian.Uint16(p) != 1008 {
				t.Fatalf("close %q, want 1008", p)
			}
			return
		}
		if i > 10_000 {
			t.Fatal("no close frame")
		}
	}
}

// PROTOCOL.md §4/§3: a subscribe that names only event_types keeps the
// exclusion set (it used to clear it), and unsubscribed names only what
// was removed: never an id that was not subscribed, nor another
// account's.
func TestWSExclusionsAndUnsubscribedAnswers(t *testing.T) {
	s := testserver.Start(t)
	acc, other := s.NewAccount("a"), s.NewAccount("b")
	x, y := s.NewInbox(acc.Key, "agent-x"), s.NewInbox(acc.Key, "agent-y")
	foreign := s.NewInbox(other.Key, "other")
	c := dialWS(t, s, acc.Key)
	c.subscribe(nil, nil)
	c.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{x}})
	if got := c.expect("unsubscribed").strs("inbox_ids"); fmt.Sprint(got) != fmt.Sprint([]string{x}) {
		t.Fatalf("unsubscribed %v", got)
	}
	f := c.subscribe(nil, []string{"message.received"})
	if got := f.strs("excluded_inbox_ids"); fmt.Sprint(got) != fmt.Sprint([]string{x}) {
		t.Fatalf("after a types-only subscribe the exclusions are %v", got)
	}
	s.Inbound(acc.Key, x, "excluded")
	ey := s.Inbound(acc.Key, y, "wanted")
	if got := c.expectEvent(); got != ey {
		t.Fatalf("got %s, want %s (the event of the excluded inbox must not come)", got, ey)
	}

	// Unsubscribing x again removes nothing; another account's inbox is
	// not named either.
	c.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{x}})
	c.expectError("not subscribed")
	c.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{foreign}})
	c.expectError("not found in this account")
	c.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{foreign, y}})
	if got := c.expect("unsubscribed").strs("inbox_ids"); fmt.Sprint(got) != fmt.Sprint([]string{y}) {
		t.Fatalf("unsubscribed %v, want only %s", got, y)
	}

	// On a set subscription, only the ids in the set are removed.
	c2 := dialWS(t, s, acc.Key)
	c2.subscribe([]string{x}, nil)
	c2.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{x, y}})
	if got := c2.expect("unsubscribed").strs("inbox_ids"); fmt.Sprint(got) != fmt.Sprint([]string{x}) {
		t.Fatalf("unsubscribed %v, want only %s", got, x)
	}
}

// A connection that acks every event (PROTOCOL.md §6, "ack": true) is not
// rate limited for its acks: only acks of events it received are free;
// any other frame counts.
func TestWSAcksOfReceivedEventsAreNotRateLimited(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.RateFrames, c.WS.RateWindow = 5, time.Hour })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	c := dialWS(t, s, acc.Key)
	c.send(map[string]any{"type": "subscribe", "ack": true}) // frame 1
	c.expect("subscribed")
	for i := 0; i < 20; i++ {
		e := s.Inbound(acc.Key, in, fmt.Sprint(i))
		if got := c.expectEvent(); got != e {
			t.Fatalf("got %s, want %s", got, e)
		}
		c.send(map[string]string{"type": "ack", "event_id": e})
	}
	for i := 0; i < 4; i++ { // frames 2-5
		c.pingPong()
	}
	c.send(map[string]string{"type": "ack", "event_id": "evt_01M8C9RB9X5V865CKTKNCS7WF4"}) // no credit left: frame 6
	c.expectError("rate limited")
	c.expectClose(4029)
}
