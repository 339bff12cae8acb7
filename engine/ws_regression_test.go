package engine_test

import (
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// Regressions found by the review of the WebSocket rework, kept as named
// tests.

// Live events of one account reach a connection in event-id order under
// concurrent ingest (release and queueing were two steps; event ids came
// from a source other id kinds reset, so claim order was not id order).
func TestRegressionLiveEventsInIDOrder(t *testing.T) {
	if testserver.OnNATSEnv() {
		t.Skip("a cluster keeps events in log order, which is not id order (docs/CLUSTER.md)")
	}
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "one")
	c := dialWS(t, s, acc.Key)
	c.subscribe(nil, nil)
	const workers, per = 8, 100
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				s.Inbound(acc.Key, in, testserver.Sprintf("w%d-%d", w, i))
			}
		}(w)
	}
	var got []string
	for len(got) < workers*per {
		got = append(got, c.expectEvent())
	}
	wg.Wait()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("event %d (%s) arrived after %s", i, got[i], got[i-1])
		}
	}
}

// An ack sent right before the client's close frame is recorded (it was
// dropped with the commands of the closing connection: the event then
// timed out and went to the webhook).
func TestRegressionAckBeforeCloseIsRecorded(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.Delivery.AckTimeout = time.Hour })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "one")
	for i := 0; i < 10; i++ {
		c := dialWS(t, s, acc.Key)
		c.send(map[string]any{"type": "subscribe", "ack": true})
		c.expect("subscribed")
		e := s.Inbound(acc.Key, in, testserver.Sprintf("m%d", i))
		if got := c.expectEvent(); got != e {
			t.Fatalf("got %s want %s", got, e)
		}
		c.send(map[string]string{"type": "ack", "event_id": e})
		_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
		_ = c.conn.Close()
		testserver.WaitFor(t, 5*time.Second, "the ack to be recorded", func() bool { return s.EventStatus(acc.Key, e) == "delivered" })
	}
}

// Only a frame that decodes as an ack is free of the rate limit: a frame
// with two "type" keys runs as its last one (a subscribe here), so it
// counts (it was let through on its first, and each replay earned more
// credit).
func TestRegressionAckCreditIsForAcksOnly(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.RateFrames, c.WS.RateWindow = 3, time.Hour })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "one")
	c := dialWS(t, s, acc.Key)
	c.subscribe(nil, nil) // frame 1
	for i := 0; i < 5; i++ {
		s.Inbound(acc.Key, in, "credit")
		c.expectEvent()
	}
	frame := []byte(`{"type":"ack","type":"ping"}`) // decodes as its last type: a ping
	for i := 0; i < 2; i++ {                        // frames 2 and 3
		c.sendText(string(frame))
		c.expect("pong")
	}
	c.sendText(string(frame)) // frame 4: over the limit although 5 acks are owed
	c.expectError("rate limited")
	c.expectClose(4029)
}
