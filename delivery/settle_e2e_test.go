package delivery_test

import (
	"testing"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// PROTOCOL.md §6, settling: a pending event written by a replay to a
// connection that does not ack is delivered, and its retries are
// cancelled. (Before the fix it stayed pending and was pushed again at
// the next retry.)
func TestReplaySettlesAPendingEvent(t *testing.T) {
	s := testserver.Start(t, schedule(0, 600*ms, 600*ms))
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	e0 := deliveredOnce(t, s, acc.Key, in)
	e1 := s.Inbound(acc.Key, in, "missed")
	waitStatus(t, s, acc.Key, e1, "pending", 1) // attempt 1 found no channel

	c := dialWS(t, s, acc.Key)
	c.send(map[string]any{"type": "subscribe", "last_event_id": e0})
	if m := c.read(); m["type"] != "subscribed" {
		t.Fatal(m)
	}
	if got := c.event(); got["event_id"] != e1 || got["attempt"] != float64(2) {
		t.Fatalf("replayed %v", got)
	}
	v := waitStatus(t, s, acc.Key, e1, "delivered", 2)
	if *v.Delivered != "websocket" || v.Attempts[1].Channel != "websocket" || !v.Attempts[1].OK || v.NextAttemptAt != nil {
		t.Fatalf("%+v", v)
	}
	// The retry that was due 600 ms after attempt 1 does not come.
	testserver.Never(t, 900*ms, "a retry of a settled event", func() bool {
		return len(getEvent(t, s, acc.Key, e1).Attempts) != 2
	})
	c.pingPong() // and no second copy came on the socket
}

// An ack of a pending event delivers it and cancels its retries, also on
// a connection that acks (for which a replay alone settles nothing).
func TestAckSettlesAPendingEvent(t *testing.T) {
	s := testserver.Start(t, schedule(0, 600*ms, 600*ms), func(c *app.Config) { c.AckTimeout = 5000 * ms })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	e0 := deliveredOnce(t, s, acc.Key, in)
	e1 := s.Inbound(acc.Key, in, "missed")
	waitStatus(t, s, acc.Key, e1, "pending", 1)

	c := dialWS(t, s, acc.Key)
	c.send(map[string]any{"type": "subscribe", "last_event_id": e0, "ack": true})
	if m := c.read(); m["type"] != "subscribed" {
		t.Fatal(m)
	}
	if got := c.event(); got["event_id"] != e1 {
		t.Fatalf("replayed %v", got)
	}
	if v := getEvent(t, s, acc.Key, e1); v.Status != "pending" {
		t.Fatalf("a replay to a connection that acks settled the event: %+v", v)
	}
	c.send(map[string]string{"type": "ack", "event_id": e1})
	v := waitStatus(t, s, acc.Key, e1, "delivered", 1)
	if *v.Delivered != "websocket" || v.NextAttemptAt != nil {
		t.Fatalf("%+v", v)
	}
	testserver.Never(t, 900*ms, "a retry of an acked event", func() bool {
		return len(getEvent(t, s, acc.Key, e1).Attempts) != 1
	})
	c.pingPong()
}

// deliveredOnce stores an event and has it delivered to a connection that
// then goes away; it returns the event's id (a replay cursor).
func deliveredOnce(t *testing.T, s *testserver.Server, key, in string) string {
	t.Helper()
	c := dialWS(t, s, key)
	c.subscribe()
	e := s.Inbound(key, in, "before")
	if got := c.event(); got["event_id"] != e {
		t.Fatal(got)
	}
	waitStatus(t, s, key, e, "delivered", 1)
	_ = c.conn.Close()
	return e
}
