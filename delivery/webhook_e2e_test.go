package delivery_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

func schedule(ds ...time.Duration) func(*app.Config) {
	return func(c *app.Config) { c.Delivery.Schedule = ds }
}

const ms = time.Millisecond

func TestWebhookDeliverySigned(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	rc := newReceiver(t, status(http.StatusNoContent))
	in, secret := inboxWithHook(t, s, acc.Key, "agent", rc.URL)
	evt := s.Inbound(acc.Key, in, "hello")
	rc.waitHits(1)
	h := rc.get(0)
	verify(t, h, secret)
	p := payload(t, h)
	if p["event_id"] != evt || p["event"] != "message.received" || p["attempt"] != float64(1) || p["inbox_id"] != in {
		t.Fatalf("payload %v", p)
	}
	v := waitStatus(t, s, acc.Key, evt, "delivered", 1)
	if *v.Delivered != "webhook" || v.Attempts[0].HTTPStatus != 204 || !v.Attempts[0].OK || v.Attempts[0].Channel != "webhook" {
		t.Fatalf("event %+v", v)
	}
}

func TestWebhookRetriesOnScheduleThenSucceeds(t *testing.T) {
	s := testserver.Start(t, schedule(0, 150*ms, 300*ms, 300*ms))
	acc := s.NewAccount("a")
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(500 + n) // 501, 502
			return
		}
		w.WriteHeader(200)
	})
	in, secret := inboxWithHook(t, s, acc.Key, "agent", rc.URL)
	evt := s.Inbound(acc.Key, in, "retry")
	v := waitStatus(t, s, acc.Key, evt, "delivered", 3)
	if len(v.Attempts) != 3 || rc.count() != 3 {
		t.Fatalf("%d attempts, %d requests", len(v.Attempts), rc.count())
	}
	for i, a := range v.Attempts {
		if a.N != i+1 {
			t.Fatalf("attempt %d numbered %d", i, a.N)
		}
	}
	if v.Attempts[0].HTTPStatus != 501 || v.Attempts[1].HTTPStatus != 502 || v.Attempts[0].OK || !v.Attempts[2].OK {
		t.Fatalf("attempts %+v", v.Attempts)
	}
	// Spacing follows the schedule: each delay from the start of the
	// previous attempt (the attempt records' times; the receiver's clock
	// adds each request's transit, which varies on a loaded machine).
	for i, want := range []time.Duration{150 * ms, 300 * ms} {
		if gap := v.Attempts[i+1].At.Sub(v.Attempts[i].At); gap < want || gap > want+2*time.Second {
			t.Fatalf("gap before attempt %d: %s, want ~%s", i+2, gap, want)
		}
	}
	// Each attempt is signed afresh: same id, its own attempt number.
	for i := 0; i < 3; i++ {
		h := rc.get(i)
		verify(t, h, secret)
		if p := payload(t, h); p["attempt"] != float64(i+1) || h.header.Get("X-Event-Id") != evt {
			t.Fatalf("request %d: %v", i, p)
		}
	}
}

func TestWebhookFailureModes(t *testing.T) {
	s := testserver.Start(t, schedule(0), func(c *app.Config) { c.Delivery.Webhook.Timeout = 400 * ms })
	acc := s.NewAccount("a")

	// A listener that accepts and then misbehaves at the TCP level.
	raw := func(t *testing.T, serve func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); serve(c) }()
			}
		}()
		return "http://" + ln.Addr().String() + "/hook"
	}
	readRequest := func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c))
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/hook"
	closed.Close()

	cases := []struct {
		name      string
		url       string
		delivered bool
		status    int
		errPart   string
	}{
		{"301 is not followed", newReceiver(t, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
			w.WriteHeader(301)
		}).URL, false, 301, "301"},
		{"404", newReceiver(t, status(404)).URL, false, 404, "404"},
		{"500", newReceiver(t, status(500)).URL, false, 500, "500"},
		{"hanging endpoint times out", raw(t, func(c net.Conn) { readRequest(c); time.Sleep(3 * time.Second) }), false, 0, "timeout"},
		{"connection refused", closedURL, false, 0, "refused"},
		{"reset after the request", raw(t, func(c net.Conn) {
			readRequest(c)
			_ = c.(*net.TCPConn).SetLinger(0)
		}), false, 0, ""},
		{"slow-drip body", raw(t, func(c net.Conn) {
			readRequest(c)
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"))
			for i := 0; i < 100; i++ {
				if _, err := c.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(50 * ms) // the drip itself
			}
		}), false, 200, "timeout"},
		{"huge 2xx body is cut off: success", raw(t, func(c net.Conn) {
			readRequest(c)
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n"))
			chunk := []byte(strings.Repeat("z", 64<<10))
			for i := 0; i < 1600; i++ {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}), true, 200, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, _ := inboxWithHook(t, s, acc.Key, testserver.Sprintf("box%d", i), tc.url)
			evt := s.Inbound(acc.Key, in, tc.name)
			want := "failed"
			if tc.delivered {
				want = "delivered"
			}
			start := time.Now()
			v := waitStatus(t, s, acc.Key, evt, want, 1)
			a := v.Attempts[0]
			if a.HTTPStatus != tc.status || !strings.Contains(a.Error, tc.errPart) || a.Channel != "webhook" {
				t.Fatalf("attempt %+v", a)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("attempt took %s", time.Since(start))
			}
		})
	}
}

func TestNoChannelFailsThenRedeliver(t *testing.T) {
	s := testserver.Start(t, schedule(0, 50*ms, 50*ms))
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	evt := s.Inbound(acc.Key, in, "nobody listens")
	v := waitStatus(t, s, acc.Key, evt, "failed", 3)
	for _, a := range v.Attempts {
		if a.Channel != "none" || a.OK {
			t.Fatalf("attempt %+v", a)
		}
	}
	// Failed events stay listed.
	var list struct{ Data []struct{ ID, Status string } }
	s.MustJSON("GET", "/v1/events?status=failed", acc.Key, nil, http.StatusOK, &list)
	if len(list.Data) != 1 || list.Data[0].ID != evt {
		t.Fatalf("failed list %+v", list)
	}
	// Redeliver: a new cycle of three attempts, numbered on.
	s.MustJSON("POST", "/v1/events/"+evt+"/redeliver", acc.Key, nil, http.StatusAccepted, nil)
	v = waitStatus(t, s, acc.Key, evt, "failed", 6)
	if len(v.Attempts) != 6 || v.Attempts[5].N != 6 {
		t.Fatalf("attempts %+v", v.Attempts)
	}
	// Redeliver with a listener now: delivered on the WebSocket.
	c := dialWS(t, s, acc.Key)
	c.subscribe()
	s.MustJSON("POST", "/v1/events/"+evt+"/redeliver", acc.Key, nil, http.StatusAccepted, nil)
	if got := c.event(); got["event_id"] != evt || got["attempt"] != float64(7) {
		t.Fatalf("redelivered %v", got)
	}
	waitStatus(t, s, acc.Key, evt, "delivered", 7)
}

func TestWebSocketTakesTheNextAttempt(t *testing.T) {
	s := testserver.Start(t, schedule(0, 300*ms, 300*ms))
	acc := s.NewAccount("a")
	rc := newReceiver(t, status(503))
	in, _ := inboxWithHook(t, s, acc.Key, "agent", rc.URL)
	evt := s.Inbound(acc.Key, in, "fall back")
	rc.waitHits(1)
	c := dialWS(t, s, acc.Key)
	c.subscribe()
	if got := c.event(); got["event_id"] != evt || got["attempt"] != float64(2) {
		t.Fatalf("got %v", got)
	}
	v := waitStatus(t, s, acc.Key, evt, "delivered", 2)
	if *v.Delivered != "websocket" || v.Attempts[0].Channel != "webhook" || v.Attempts[1].Channel != "websocket" {
		t.Fatalf("%+v", v)
	}
}

func TestAccountWebhookAppliesWithoutInboxURL(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	rcAcc, rcInbox := newReceiver(t, status(200)), newReceiver(t, status(200))
	var wh struct{ URL, Secret string }
	s.MustJSON("PUT", "/v1/webhook", acc.Key, map[string]string{"url": rcAcc.URL}, http.StatusOK, &wh)
	plain := s.NewInbox(acc.Key, "plain")
	own, ownSecret := inboxWithHook(t, s, acc.Key, "own", rcInbox.URL)
	s.Inbound(acc.Key, plain, "to the account hook")
	s.Inbound(acc.Key, own, "to the inbox hook")
	rcAcc.waitHits(1)
	rcInbox.waitHits(1)
	verify(t, rcAcc.get(0), wh.Secret)
	verify(t, rcInbox.get(0), ownSecret)

	// Rotation: the next delivery is signed with the new secret only.
	var rot struct{ Secret string }
	s.MustJSON("POST", "/v1/webhook/rotate-secret", acc.Key, nil, http.StatusOK, &rot)
	s.Inbound(acc.Key, plain, "after rotation")
	rcAcc.waitHits(2)
	verify(t, rcAcc.get(1), rot.Secret)
	if rot.Secret == wh.Secret {
		t.Fatal("rotation kept the secret")
	}
}

func TestRestartResumesTheSchedule(t *testing.T) {
	s := testserver.Start(t, schedule(0, 1500*ms, 200*ms))
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	evt := s.Inbound(acc.Key, in, "survives restarts")
	v := waitStatus(t, s, acc.Key, evt, "pending", 1)
	first := v.Attempts[0].At
	s.Restart()
	// Attempt 2 comes at its durable time (not at once, not from scratch),
	// attempt 3 after it.
	v = waitStatus(t, s, acc.Key, evt, "failed", 3)
	if gap := v.Attempts[1].At.Sub(first); gap < 1500*ms-5*ms {
		t.Fatalf("attempt 2 only %s after attempt 1: the schedule was reset", gap)
	}
	if len(v.Attempts) != 3 || v.Attempts[1].N != 2 {
		t.Fatalf("attempts %+v", v.Attempts)
	}

	// An attempt that fell due while the server was down runs at start-up.
	evt2 := s.Inbound(acc.Key, in, "overdue")
	v = waitStatus(t, s, acc.Key, evt2, "pending", 1)
	due, _ := time.Parse(time.RFC3339, *v.NextAttemptAt)
	s.Stop()
	testserver.WaitFor(t, 5*time.Second, "the attempt to fall due", func() bool { return time.Now().After(due.Add(100 * ms)) })
	s.Restart()
	v = waitStatus(t, s, acc.Key, evt2, "pending", 2)
	if v.Attempts[1].At.Before(due) {
		t.Fatalf("attempt 2 at %s, before its due time %s", v.Attempts[1].At, due)
	}
}

// PROTOCOL.md §6, ack timeout: only a connection that subscribed with
// "ack": true is held to it; an event written only to such a connection
// and not acked in time fails that attempt, and the next one goes to the
// webhook although the connection is still there. (Before the fix every
// connection was held to it and the webhook was never tried.)
func TestAckTimeoutMovesOnToTheWebhook(t *testing.T) {
	s := testserver.Start(t, schedule(0, 100*ms), func(c *app.Config) { c.Delivery.AckTimeout = 300 * ms })
	acc := s.NewAccount("a")
	rc := newReceiver(t, status(200))
	in, _ := inboxWithHook(t, s, acc.Key, "agent", rc.URL)

	c := dialWS(t, s, acc.Key)
	c.subscribeAck()

	// Acked in time: delivered on the WebSocket, attempt recorded ok.
	e1 := s.Inbound(acc.Key, in, "acked")
	if got := c.event(); got["event_id"] != e1 {
		t.Fatal(got)
	}
	c.send(map[string]string{"type": "ack", "event_id": e1})
	v := waitStatus(t, s, acc.Key, e1, "delivered", 1)
	if *v.Delivered != "websocket" || !v.Attempts[0].OK {
		t.Fatalf("%+v", v)
	}

	// Not acked, connection still open: the attempt fails at the deadline
	// and the next attempt goes to the webhook.
	e2 := s.Inbound(acc.Key, in, "not acked")
	if got := c.event(); got["event_id"] != e2 {
		t.Fatal(got)
	}
	v = waitStatus(t, s, acc.Key, e2, "delivered", 2)
	if *v.Delivered != "webhook" || v.Attempts[0].OK || !strings.Contains(v.Attempts[0].Error, "not acked") || v.Attempts[1].Channel != "webhook" {
		t.Fatalf("%+v", v)
	}
	if rc.count() != 1 {
		t.Fatalf("%d webhook requests", rc.count())
	}
	c.pingPong() // no second copy of e2 came on the socket
}

// A connection that did not ask for acks (every OpenMail client) is never
// subject to the ack timeout: the write is the success.
func TestAckTimeoutSparesConnectionsThatDoNotAck(t *testing.T) {
	s := testserver.Start(t, schedule(0, 100*ms), func(c *app.Config) { c.Delivery.AckTimeout = 200 * ms })
	acc := s.NewAccount("a")
	rc := newReceiver(t, status(200))
	in, _ := inboxWithHook(t, s, acc.Key, "agent", rc.URL)
	c := dialWS(t, s, acc.Key)
	c.subscribe()
	e := s.Inbound(acc.Key, in, "hello")
	if got := c.event(); got["event_id"] != e {
		t.Fatal(got)
	}
	v := waitStatus(t, s, acc.Key, e, "delivered", 1)
	if *v.Delivered != "websocket" || len(v.Attempts) != 1 || !v.Attempts[0].OK {
		t.Fatalf("%+v", v)
	}
	testserver.Never(t, 500*ms, "a second attempt after the ack timeout", func() bool {
		v := getEvent(t, s, acc.Key, e)
		return v.Status != "delivered" || len(v.Attempts) != 1 || rc.count() != 0
	})
}

// A minimal WebSocket client for these tests (gorilla/websocket).
type wsc struct {
	t    *testing.T
	conn *websocket.Conn
}

func dialWS(t *testing.T, s *testserver.Server, key string) *wsc {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(s.WSURL, http.Header{"Authorization": {"Bearer " + key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &wsc{t, conn}
}

func (c *wsc) send(v any) {
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsc) read() map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := c.conn.ReadJSON(&m); err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *wsc) subscribe() {
	c.t.Helper()
	c.send(map[string]string{"type": "subscribe"})
	if m := c.read(); m["type"] != "subscribed" {
		c.t.Fatalf("got %v", m)
	}
}

// subscribeAck subscribes to everything as a connection that acks.
func (c *wsc) subscribeAck() {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "ack": true})
	if m := c.read(); m["type"] != "subscribed" {
		c.t.Fatalf("got %v", m)
	}
}

// pingPong checks that the next frame after a ping is its pong.
func (c *wsc) pingPong() {
	c.t.Helper()
	c.send(map[string]string{"type": "ping"})
	if m := c.read(); m["type"] != "pong" {
		c.t.Fatalf("got %v, want the pong", m)
	}
}

func (c *wsc) event() map[string]any {
	c.t.Helper()
	m := c.read()
	if m["event"] == nil {
		c.t.Fatalf("want an event, got %v", m)
	}
	return m
}

// Regression: a replayed event whose in-flight attempt went to the webhook
// left a dedup entry on the connection that swallowed its next push (a
// redeliver), recorded as a WebSocket success.
func TestRegressionReplayEntryDoesNotSwallowRedeliver(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 2 {
			time.Sleep(time.Second) // a slow endpoint keeps attempt 1 in flight
		}
		w.WriteHeader(200)
	})
	in, _ := inboxWithHook(t, s, acc.Key, "agent", rc.URL)
	e0 := s.Inbound(acc.Key, in, "first")
	waitStatus(t, s, acc.Key, e0, "delivered", 1)
	e1 := s.Inbound(acc.Key, in, "second")
	rc.waitHits(2)

	c := dialWS(t, s, acc.Key)
	c.send(map[string]any{"type": "subscribe", "last_event_id": e0})
	if m := c.read(); m["type"] != "subscribed" {
		t.Fatal(m)
	}
	if got := c.event(); got["event_id"] != e1 {
		t.Fatalf("replay %v", got)
	}
	waitStatus(t, s, acc.Key, e1, "delivered", 1)
	s.MustJSON("POST", "/v1/events/"+e1+"/redeliver", acc.Key, nil, http.StatusAccepted, nil)
	if got := c.event(); got["event_id"] != e1 || got["attempt"] != float64(2) {
		t.Fatalf("redelivered %v", got)
	}
}
