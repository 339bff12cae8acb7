package delivery_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

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
	s := testserver.Start(t, schedule(0, 600*ms, 600*ms), func(c *app.Config) { c.Delivery.AckTimeout = 5000 * ms })
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

// PROTOCOL.md §8 and docs/OPERATIONS.md: while a shutdown drains (a
// webhook attempt still in flight), the server keeps answering: /readyz
// and new API calls and upgrades get 503 draining; the listener closes
// only when the drain ends. (It used to close at once: connection
// refused.)
func TestDrainKeepsAnswering503(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
		<-release
		w.WriteHeader(200)
	})
	in, _ := inboxWithHook(t, s, acc.Key, "agent", rc.URL)
	evt := s.Inbound(acc.Key, in, "in flight")
	rc.waitHits(1) // the attempt is in flight, held by the receiver

	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	testserver.WaitFor(t, 5*time.Second, "readyz to say draining", func() bool {
		code, body, _ := s.Do("GET", "/readyz", "", nil)
		return code == http.StatusServiceUnavailable && strings.Contains(string(body), "draining")
	})
	if code, body, _ := s.Do("GET", "/v1/inboxes", acc.Key, nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "draining") {
		t.Fatalf("API call while draining: %d %s", code, body)
	}
	_, resp, err := websocket.DefaultDialer.Dial(s.WSURL, http.Header{"Authorization": {"Bearer " + acc.Key}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while draining: %v %+v", err, resp)
	}
	select {
	case <-stopped:
		t.Fatal("the drain ended while an attempt was in flight")
	default:
	}
	close(release)
	<-stopped
	if _, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://")); err == nil {
		t.Fatal("the listener is still open after the drain")
	}
	s.Restart()
	if v := getEvent(t, s, acc.Key, evt); v.Status != "delivered" || *v.Delivered != "webhook" {
		t.Fatalf("the in-flight attempt's outcome was not recorded: %+v", v)
	}
}
