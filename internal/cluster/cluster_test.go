package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/natstest"
	"github.com/mailwire/mailwire/internal/testserver"
)

func TestMain(m *testing.M) { testserver.RunWithLeakCheck(m) }

// cluster is nodes mailwire nodes on one 3-server NATS JetStream cluster
// (R3, every write fsynced).
type cluster struct {
	nats  *natstest.Cluster
	nodes []*testserver.Server
}

func startCluster(t *testing.T, nodes int, mods ...func(*app.Config)) *cluster {
	return startClusterB(t, nodes, mods...)
}

func startClusterB(t testing.TB, nodes int, mods ...func(*app.Config)) *cluster {
	t.Helper()
	c := &cluster{nats: testserver.NATS(t, 3)}
	for range nodes {
		c.nodes = append(c.nodes, testserver.Start(t, append([]func(*app.Config){testserver.OnNATS(c.nats)}, mods...)...))
	}
	return c
}

type wsConn struct {
	t *testing.T
	c *websocket.Conn
}

func dial(t *testing.T, s *testserver.Server, key string) *wsConn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(s.WSURL, http.Header{"Authorization": {"Bearer " + key}})
	if err != nil {
		t.Fatalf("dial %s: %v", s.WSURL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &wsConn{t: t, c: c}
}

func (w *wsConn) send(v any) {
	w.t.Helper()
	if err := w.c.WriteJSON(v); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsConn) read() map[string]any {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var f map[string]any
	if err := w.c.ReadJSON(&f); err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return f
}

func (w *wsConn) subscribe(extra map[string]any) {
	w.t.Helper()
	m := map[string]any{"type": "subscribe"}
	for k, v := range extra {
		m[k] = v
	}
	w.send(m)
	if f := w.read(); f["type"] != "subscribed" {
		w.t.Fatalf("subscribe: got %v", f)
	}
}

func (w *wsConn) event() string {
	w.t.Helper()
	f := w.read()
	id, _ := f["event_id"].(string)
	if id == "" {
		w.t.Fatalf("got %v, want an event", f)
	}
	return id
}

type eventView struct {
	Status       string  `json:"status"`
	DeliveredVia *string `json:"deliveredVia"`
	Attempts     []struct {
		N       int    `json:"n"`
		Channel string `json:"channel"`
		OK      bool   `json:"ok"`
		Status  int    `json:"httpStatus"`
	} `json:"attempts"`
}

func eventOf(t *testing.T, s *testserver.Server, key, id string) eventView {
	t.Helper()
	var v eventView
	s.MustJSON("GET", "/v1/events/"+id, key, nil, http.StatusOK, &v)
	return v
}

// An event accepted by node A reaches sockets on B and C, is recorded
// delivered over the WebSocket once, and can be read through every node.
func TestEventReachesSocketsOnEveryNode(t *testing.T) {
	c := startCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	wb, wc := dial(t, b, acc.Key), dial(t, cc, acc.Key)
	wb.subscribe(nil)
	wc.subscribe(nil)
	evt := a.Inbound(acc.Key, inbox, "hello cluster")
	if got := wb.event(); got != evt {
		t.Fatalf("node B got %s, want %s", got, evt)
	}
	if got := wc.event(); got != evt {
		t.Fatalf("node C got %s, want %s", got, evt)
	}
	testserver.WaitFor(t, 10*time.Second, "delivered", func() bool { return b.EventStatus(acc.Key, evt) == "delivered" })
	v := eventOf(t, cc, acc.Key, evt)
	if v.DeliveredVia == nil || *v.DeliveredVia != "websocket" || len(v.Attempts) != 1 || !v.Attempts[0].OK {
		t.Fatalf("event as node C shows it: %+v", v)
	}
}

// A client that reconnects to another node with last_event_id gets the
// events it missed, accepted by any node, once each and in log order,
// then live ones.
func TestReplayOnAnotherNode(t *testing.T) {
	c := startCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	w := dial(t, a, acc.Key)
	w.subscribe(nil)
	first := b.Inbound(acc.Key, inbox, "seen")
	if got := w.event(); got != first {
		t.Fatalf("got %s, want %s", got, first)
	}
	_ = w.c.Close()
	var missed []string
	for i, n := range []*testserver.Server{a, b, cc, a, b} {
		missed = append(missed, n.Inbound(acc.Key, inbox, "missed "+string(rune('a'+i))))
	}
	w2 := dial(t, cc, acc.Key)
	w2.subscribe(map[string]any{"last_event_id": first})
	for i, want := range missed {
		if got := w2.event(); got != want {
			t.Fatalf("replayed event %d is %s, want %s", i, got, want)
		}
	}
	live := b.Inbound(acc.Key, inbox, "live")
	if got := w2.event(); got != live {
		t.Fatalf("live event %s, want %s", got, live)
	}
}

// With no socket anywhere the webhook gets each attempt exactly once,
// from whichever node owns it, on the schedule.
func TestWebhookOncePerAttempt(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			EventID string `json:"event_id"`
			Attempt int    `json:"attempt"`
		}
		_ = json.Unmarshal(b, &p)
		mu.Lock()
		hits = append(hits, p.EventID)
		n := len(hits)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	// Five nodes, as the issue asks: exactly one of them makes each attempt.
	c := startCluster(t, 5, func(cfg *app.Config) {
		cfg.Delivery.Schedule = []time.Duration{0, 300 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	})
	a := c.nodes[0]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	a.MustJSON("PUT", "/v1/webhook", acc.Key, map[string]string{"url": recv.URL}, http.StatusOK, nil)
	evt := c.nodes[1].Inbound(acc.Key, inbox, "to the hook")
	testserver.WaitFor(t, 20*time.Second, "delivered", func() bool { return a.EventStatus(acc.Key, evt) == "delivered" })
	testserver.Never(t, time.Second, "another webhook request", func() bool { mu.Lock(); defer mu.Unlock(); return len(hits) > 3 })
	v := eventOf(t, c.nodes[2], acc.Key, evt)
	if len(v.Attempts) != 3 || v.Attempts[0].Status != 503 || v.Attempts[1].Status != 503 || !v.Attempts[2].OK {
		t.Fatalf("attempts %+v", v.Attempts)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hits) != 3 {
		t.Fatalf("the webhook got %d requests, want 3 (one per attempt)", len(hits))
	}
}

// A key revoked through node A closes its sockets on node B (4001).
func TestRevocationReachesEveryNode(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	var acc struct{ ID, APIKey, KeyID string }
	a.MustJSON("POST", "/admin/v1/accounts", testserver.AdminToken, map[string]string{"name": "acme"}, http.StatusCreated, &acc)
	w := dial(t, b, acc.APIKey)
	w.subscribe(nil)
	start := time.Now()
	a.MustJSON("DELETE", "/admin/v1/api-keys/"+acc.KeyID, testserver.AdminToken, nil, http.StatusNoContent, nil)
	_ = w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := w.c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if ok := asClose(err, &ce); !ok || ce.Code != 4001 {
			t.Fatalf("the socket on node B ended with %v, want close 4001", err)
		}
		break
	}
	// Seconds on a quiet machine are milliseconds (the directory watch);
	// the bound is the read deadline above, not a timed assertion.
	t.Logf("revocation reached node B in %s", time.Since(start))
	if st, _, _ := b.Do("GET", "/v1/inboxes", acc.APIKey, nil); st != http.StatusUnauthorized {
		t.Fatalf("the revoked key still authenticates on node B: %d", st)
	}
}

func asClose(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	*ce = e
	return ok
}

func jsonID(b []byte, out *struct{ EventID string }) bool {
	return json.Unmarshal(b, out) == nil && out.EventID != ""
}

// An account, key or inbox created through one node is usable through
// another at once (a load balancer sends the next request anywhere): a
// lookup that misses waits for the directory to catch up.
func TestDirectoryReadYourWritesAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	for i := range 20 {
		var acc struct{ ID, APIKey string }
		a.MustJSON("POST", "/admin/v1/accounts", testserver.AdminToken, map[string]string{"name": fmt.Sprintf("a%d", i)}, http.StatusCreated, &acc)
		var in struct{ ID string }
		b.MustJSON("POST", "/v1/inboxes", acc.APIKey, map[string]string{"mailboxName": fmt.Sprintf("box%d", i)}, http.StatusCreated, &in)
		a.MustJSON("GET", "/v1/inboxes/"+in.ID, acc.APIKey, nil, http.StatusOK, nil)
	}
}
