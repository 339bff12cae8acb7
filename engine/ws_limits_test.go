package engine_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

func TestWSAuth(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")

	// No key, unknown key, malformed key: error frame, then close 4001.
	for _, key := range []string{"", "om_" + strings.Repeat("0", 48), "garbage"} {
		c := dialWS(t, s, key)
		c.expectError("unauthorized")
		c.expectClose(4001)
	}
	// ?token= works; the header wins when both are present.
	c := dialWSURL(t, s.WSURL+"?token="+acc.Key, nil)
	c.pingPong()
	c = dialWSURL(t, s.WSURL+"?token="+acc.Key, http.Header{"Authorization": {"Bearer om_" + strings.Repeat("1", 48)}})
	c.expectError("unauthorized")
	c.expectClose(4001)
	c = dialWSURL(t, s.WSURL+"?token=nope", http.Header{"Authorization": {"Bearer " + acc.Key}})
	c.pingPong()
}

func TestWSRevocationClosesLiveSockets(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	var key2 struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts/"+acc.ID+"/api-keys", testserver.AdminToken, nil, http.StatusCreated, &key2)

	c1 := dialWS(t, s, key2.APIKey)
	c1.subscribe(nil, nil)
	c2 := dialWS(t, s, acc.Key) // another key of the same account stays
	c2.subscribe(nil, nil)

	if code, body, _ := s.Do("DELETE", "/admin/v1/api-keys/"+key2.ID, testserver.AdminToken, nil); code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", code, body)
	}
	c1.expectError("revoked")
	c1.expectClose(4001)
	c2.pingPong()
	// The revoked key cannot connect again.
	c3 := dialWS(t, s, key2.APIKey)
	c3.expectClose(4001)
}

func TestWSConnectionCapPerAccount(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.MaxConnsPerAccount = 2 })
	a, b := s.NewAccount("a"), s.NewAccount("b")
	c1, c2 := dialWS(t, s, a.Key), dialWS(t, s, a.Key)
	c1.pingPong()
	c2.pingPong()
	c3 := dialWS(t, s, a.Key)
	c3.expectError("too many connections")
	c3.expectClose(4008)
	// Another account is not affected; a freed slot can be used again.
	dialWS(t, s, b.Key).pingPong()
	_ = c1.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	c1.expectClose(1000)
	testserver.WaitFor(t, 5*time.Second, "slot freed", func() bool {
		c := dialWSURL(t, s.WSURL, http.Header{"Authorization": {"Bearer " + a.Key}})
		_ = c.conn.WriteJSON(map[string]string{"type": "ping"})
		f, err := c.readErr(5 * time.Second)
		_ = c.conn.Close()
		return err == nil && f.typ() == "pong"
	})
}

func TestWSRateLimit(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.RateFrames, c.WS.RateWindow = 5, time.Hour })
	acc := s.NewAccount("a")
	c, other := dialWS(t, s, acc.Key), dialWS(t, s, acc.Key)
	for i := 0; i < 5; i++ {
		c.pingPong()
	}
	c.send(map[string]string{"type": "ping"})
	c.expectError("rate limited")
	c.expectClose(4029)
	other.pingPong() // only that connection
}

func TestWSFrameTooBig(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.MaxFrame = 1024 })
	acc := s.NewAccount("a")
	c := dialWS(t, s, acc.Key)
	c.sendText(`{"type":"ping","pad":"` + strings.Repeat("x", 2000) + `"}`)
	c.expectError("frame too large")
	c.expectClose(1009)

	// A message fragmented into frames that together exceed the cap too.
	c = dialWS(t, s, acc.Key)
	w, err := c.conn.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(`{"type":"ping","pad":"` + strings.Repeat("y", 3000) + `"}`))
	_ = w.Close()
	c.expectClose(1009)
}

func TestWSHeartbeat(t *testing.T) {
	// The pong timeout leaves room for a client goroutine that is not
	// scheduled for a while (-race, the whole suite on two cores); pings
	// still come every 30 ms.
	s := testserver.Start(t, func(c *app.Config) {
		c.WS.PingInterval, c.WS.PongTimeout = 30*time.Millisecond, 500*time.Millisecond
	})
	acc := s.NewAccount("a")

	// gorilla answers pings while reading: the connection outlives many
	// ping intervals.
	alive := dialWS(t, s, acc.Key)
	pings := make(chan struct{}, 100)
	alive.conn.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return alive.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := alive.conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 5; i++ {
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no ping from the server")
		}
	}

	// A raw client that never answers is dropped after the pong timeout.
	raw := rawUpgrade(t, s, acc.Key)
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	for {
		if _, err := raw.Read(buf); err != nil {
			break // EOF: the server closed it
		}
	}
	// The answering connection still works.
	if err := alive.conn.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
}

func TestWSSlowConsumerIsDisconnected(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.MaxPending = 16 << 10 })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	// A client that subscribes and then never reads; a small receive buffer
	// makes the kernel's buffers fill quickly.
	raw := rawUpgrade(t, s, acc.Key, func(c *net.TCPConn) { _ = c.SetReadBuffer(4096) })
	writeClientFrame(t, raw, 0x1, []byte(`{"type":"subscribe"}`))
	body := strings.Repeat("a long line of text. ", 10000) // ~200 KiB per event
	var last string
	closed := false
	for i := 0; i < 200 && !closed; i++ {
		var out struct{ EventID string }
		s.MustJSON("POST", "/v1/inboxes/"+in+"/inbound", acc.Key, map[string]string{"from": "a@b.c", "subject": fmt.Sprint(i), "text": body}, http.StatusAccepted, &out)
		last = out.EventID
		var m struct{ Attempts []struct{ OK bool } }
		attempted(t, s, acc.Key, last)
		s.MustJSON("GET", "/v1/events/"+last, acc.Key, nil, http.StatusOK, &m)
		closed = !m.Attempts[0].OK
	}
	if !closed {
		t.Fatal("the server never refused a frame for the slow consumer")
	}
	// The connection is gone; the event stays stored, not delivered.
	if st := s.EventStatus(acc.Key, last); st != "pending" {
		t.Fatalf("status %s", st)
	}
	testserver.WaitFor(t, 5*time.Second, "socket closed", func() bool {
		code, body, _ := s.Do("GET", "/metrics", "", nil)
		return code == 200 && strings.Contains(string(body), "mailwire_ws_connections 0")
	})
	code, metrics, _ := s.Do("GET", "/metrics", "", nil)
	if code != 200 || !strings.Contains(string(metrics), `mailwire_ws_slow_consumers_total 1`) {
		t.Fatalf("metrics: %s", metrics)
	}
}

func TestWSShutdownClosesWith1001(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	c1, c2 := dialWS(t, s, acc.Key), dialWS(t, s, acc.Key)
	c1.subscribe(nil, nil)
	done := make(chan struct{})
	go func() { s.Stop(); close(done) }()
	c1.expectClose(1001)
	c2.expectClose(1001)
	<-done
}

func TestWSHandshakeErrors(t *testing.T) {
	s := testserver.Start(t)
	f := func(hdr map[string]string, want int) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.URL+"/v1/ws", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%v: status %d, want %d", hdr, resp.StatusCode, want)
		}
	}
	ok := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	f(map[string]string{}, 400)
	for _, drop := range []string{"Connection", "Upgrade", "Sec-WebSocket-Version", "Sec-WebSocket-Key"} {
		h := map[string]string{}
		for k, v := range ok {
			if k != drop {
				h[k] = v
			}
		}
		f(h, 400)
	}
	bad := map[string]string{}
	for k, v := range ok {
		bad[k] = v
	}
	bad["Sec-WebSocket-Version"] = "8"
	f(bad, 400)
	bad["Sec-WebSocket-Version"], bad["Sec-WebSocket-Key"] = "13", "short"
	f(bad, 400)
	// A draining server refuses upgrades with 503.
	s.Engine.Drain()
	f(ok, 503)
}

// rawUpgrade performs the opening handshake on a raw TCP connection and
// returns it, the 101 read.
func rawUpgrade(t *testing.T, s *testserver.Server, key string, tune ...func(*net.TCPConn)) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	for _, f := range tune {
		f(conn.(*net.TCPConn))
	}
	req := "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer " + key + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	if br.Buffered() > 0 {
		t.Fatalf("unexpected bytes after the handshake")
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}
