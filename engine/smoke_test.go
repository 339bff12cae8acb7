package engine_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/testserver"
)

func TestSmokeInboundToWebSocket(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("smoke")
	inbox := s.NewInbox(acc.Key, "agent")

	conn, _, err := websocket.DefaultDialer.Dial(s.WSURL, http.Header{"Authorization": {"Bearer " + acc.Key}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteJSON(map[string]any{"type": "subscribe"}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var sub map[string]any
	if err := conn.ReadJSON(&sub); err != nil || sub["type"] != "subscribed" {
		t.Fatalf("subscribed: %v %v", sub, err)
	}
	evt := s.Inbound(acc.Key, inbox, "hello")
	var ev map[string]any
	if err := conn.ReadJSON(&ev); err != nil {
		t.Fatal(err)
	}
	if ev["event_id"] != evt || ev["event"] != "message.received" {
		t.Fatalf("got %v", ev)
	}
	b, _ := json.Marshal(ev)
	t.Logf("%s", b)
	testserver.WaitFor(t, 5*time.Second, "delivered", func() bool { return s.EventStatus(acc.Key, evt) == "delivered" })
}
