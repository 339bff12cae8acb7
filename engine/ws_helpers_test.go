package engine_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/testserver"
)

// wsClient is a test client on gorilla/websocket (a library independent
// of the server's own WebSocket code).
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// dialWS connects with the key in the Authorization header ("" = none).
func dialWS(t testing.TB, s *testserver.Server, key string) *wsClient {
	t.Helper()
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	return dialWSURL(t, s.WSURL, h)
}

func dialWSURL(t testing.TB, url string, h http.Header) *wsClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	c := &wsClient{t: t, conn: conn}
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) sendText(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// frame is a decoded server frame.
type frame map[string]any

func (f frame) typ() string { s, _ := f["type"].(string); return s }

func (f frame) str(k string) string { s, _ := f[k].(string); return s }

func (f frame) strs(k string) []string {
	var out []string
	for _, v := range f[k].([]any) {
		out = append(out, v.(string))
	}
	return out
}

// read returns the next frame, failing the test after 5 s.
func (c *wsClient) read() frame {
	c.t.Helper()
	f, err := c.readErr(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

func (c *wsClient) readErr(timeout time.Duration) (frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("frame is not JSON: %q", data)
	}
	return f, nil
}

// expect reads a frame of the given type.
func (c *wsClient) expect(typ string) frame {
	c.t.Helper()
	f := c.read()
	if f.typ() != typ {
		c.t.Fatalf("got frame %v, want type %q", f, typ)
	}
	return f
}

// expectError reads an error frame whose message contains want.
func (c *wsClient) expectError(want string) {
	c.t.Helper()
	f := c.expect("error")
	if !strings.Contains(f.str("message"), want) {
		c.t.Fatalf("error %q does not mention %q", f.str("message"), want)
	}
}

// expectEvent reads an event frame and returns its event_id.
func (c *wsClient) expectEvent() string {
	c.t.Helper()
	f := c.read()
	if f.str("event") == "" {
		c.t.Fatalf("got %v, want an event", f)
	}
	return f.str("event_id")
}

// expectClose reads until the server closes and checks the close code.
func (c *wsClient) expectClose(code int) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		_, data, err := c.conn.ReadMessage()
		if err == nil {
			continue // frames before the close (e.g. the error frame)
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != code {
				c.t.Fatalf("closed with %d %q, want %d (last data %q)", ce.Code, ce.Text, code, data)
			}
			return
		}
		c.t.Fatalf("want close %d, got %v", code, err)
	}
}

// subscribe sends a subscribe frame and returns the subscribed answer.
func (c *wsClient) subscribe(inboxes []string, types []string) frame {
	c.t.Helper()
	m := map[string]any{"type": "subscribe"}
	if inboxes != nil {
		m["inbox_ids"] = inboxes
	}
	if types != nil {
		m["event_types"] = types
	}
	c.send(m)
	return c.expect("subscribed")
}

// pingPong checks the connection is alive and in order.
func (c *wsClient) pingPong() {
	c.t.Helper()
	c.send(map[string]string{"type": "ping"})
	c.expect("pong")
}

func stringsContains(s, sub string) bool { return strings.Contains(s, sub) }
