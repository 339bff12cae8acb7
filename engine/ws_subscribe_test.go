package engine_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// attempted waits until the event's first attempt is recorded: whatever it
// wrote to sockets is in them by then.
func attempted(t *testing.T, s *testserver.Server, key, evt string) {
	t.Helper()
	testserver.WaitFor(t, 5*time.Second, "attempt of "+evt, func() bool {
		var out struct{ Attempts []any }
		s.MustJSON("GET", "/v1/events/"+evt, key, nil, http.StatusOK, &out)
		return len(out.Attempts) > 0
	})
}

// notDelivered checks evt did not reach c: once its attempt is recorded, a
// ping's pong is the next frame (TCP keeps the order of what was written).
func notDelivered(t *testing.T, s *testserver.Server, key, evt string, c *wsClient) {
	t.Helper()
	attempted(t, s, key, evt)
	c.pingPong()
}

func TestWSSubscribeSemantics(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in1, in2, in3 := s.NewInbox(acc.Key, "one"), s.NewInbox(acc.Key, "two"), s.NewInbox(acc.Key, "three")
	c := dialWS(t, s, acc.Key)

	// A fresh connection receives nothing until it subscribes.
	notDelivered(t, s, acc.Key, s.Inbound(acc.Key, in1, "before"), c)

	// Specific inboxes accumulate, sorted, types all.
	f := c.subscribe([]string{in2}, nil)
	if got := f.strs("inbox_ids"); !slices.Equal(got, []string{in2}) || len(f.strs("event_types")) != 0 {
		t.Fatalf("subscribed %v", f)
	}
	f = c.subscribe([]string{in1}, nil)
	want := []string{in1, in2}
	slices.Sort(want)
	if got := f.strs("inbox_ids"); !slices.Equal(got, want) {
		t.Fatalf("accumulate: %v, want %v", got, want)
	}
	e3 := s.Inbound(acc.Key, in3, "not subscribed")
	e1 := s.Inbound(acc.Key, in1, "subscribed")
	if got := c.expectEvent(); got != e1 {
		t.Fatalf("got %s, want %s (in3's %s must not arrive)", got, e1, e3)
	}

	// Unsubscribe one id: the answer lists it; its events stop.
	c.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{in1}})
	if got := c.expect("unsubscribed").strs("inbox_ids"); !slices.Equal(got, []string{in1}) {
		t.Fatalf("unsubscribed %v", got)
	}
	e1 = s.Inbound(acc.Key, in1, "after unsubscribe")
	e2 := s.Inbound(acc.Key, in2, "still subscribed")
	if got := c.expectEvent(); got != e2 {
		t.Fatalf("got %s, want %s (%s must not arrive)", got, e2, e1)
	}

	// "all" absorbs ids; an exclusion under "all" holds.
	f = c.subscribe(nil, nil)
	if len(f.strs("inbox_ids")) != 0 {
		t.Fatalf("all: %v", f)
	}
	c.send(map[string]any{"type": "unsubscribe", "inbox_ids": []string{in3}})
	c.expect("unsubscribed")
	e3 = s.Inbound(acc.Key, in3, "excluded")
	e1 = s.Inbound(acc.Key, in1, "included")
	if got := c.expectEvent(); got != e1 {
		t.Fatalf("got %s, want %s (excluded %s must not arrive)", got, e1, e3)
	}
	// Subscribing to the excluded inbox lifts the exclusion.
	f = c.subscribe([]string{in3}, nil)
	if len(f.strs("inbox_ids")) != 0 {
		t.Fatalf("still all: %v", f)
	}
	if _, ok := f["excluded_inbox_ids"]; ok {
		t.Fatalf("exclusion not lifted: %v", f)
	}
	e3 = s.Inbound(acc.Key, in3, "included again")
	if got := c.expectEvent(); got != e3 {
		t.Fatalf("got %s, want %s", got, e3)
	}

	// Unsubscribe everything: the answer is [], nothing arrives.
	c.send(map[string]any{"type": "unsubscribe"})
	if got := c.expect("unsubscribed").strs("inbox_ids"); len(got) != 0 {
		t.Fatalf("unsubscribed %v", got)
	}
	notDelivered(t, s, acc.Key, s.Inbound(acc.Key, in1, "nothing"), c)

	// Event types: known types filter; an unknown type rejects the frame.
	f = c.subscribe([]string{in1}, []string{"message.received"})
	if got := f.strs("event_types"); !slices.Equal(got, []string{"message.received"}) {
		t.Fatalf("types %v", got)
	}
	c.send(map[string]any{"type": "subscribe", "inbox_ids": []string{in2}, "event_types": []string{"inbox.suspended"}})
	c.expectError("unknown event_types")
	// ... and the subscription is unchanged: in2 does not arrive, in1 does.
	e2 = s.Inbound(acc.Key, in2, "not added")
	e1 = s.Inbound(acc.Key, in1, "type filter")
	if got := c.expectEvent(); got != e1 {
		t.Fatalf("got %s, want %s (rejected frame must not add %s)", got, e1, e2)
	}
}

func TestWSSubscribeOwnership(t *testing.T) {
	s := testserver.Start(t)
	a, b := s.NewAccount("a"), s.NewAccount("b")
	ina := s.NewInbox(a.Key, "alpha")
	inb := s.NewInbox(b.Key, "bravo")
	c := dialWS(t, s, a.Key)
	c.subscribe([]string{ina}, nil)

	// One foreign id (and one unknown) rejects the whole frame, naming them.
	unknown := "inb_01M8C9RB9X5V865CKTKNCS7WF4"
	c.send(map[string]any{"type": "subscribe", "inbox_ids": []string{ina, inb, unknown}})
	f := c.expect("error")
	for _, id := range []string{inb, unknown} {
		if !containsStr(f.str("message"), id) {
			t.Fatalf("error %q does not name %s", f.str("message"), id)
		}
	}
	if containsStr(f.str("message"), ina) {
		t.Fatalf("error names the owned inbox: %q", f.str("message"))
	}
	c.send(map[string]any{"type": "subscribe", "inbox_ids": []string{"not-an-id"}})
	c.expectError("not found in this account")

	// Tenant isolation: b's events never reach a, even subscribed to all.
	c.subscribe(nil, nil)
	cb := dialWS(t, s, b.Key)
	cb.subscribe(nil, nil)
	eb := s.Inbound(b.Key, inb, "for b")
	if got := cb.expectEvent(); got != eb {
		t.Fatalf("b got %s", got)
	}
	notDelivered(t, s, b.Key, eb, c)
}

func TestWSMultipleConnectionsEachGetACopy(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	var cs []*wsClient
	for i := 0; i < 3; i++ {
		c := dialWS(t, s, acc.Key)
		c.subscribe(nil, nil)
		cs = append(cs, c)
	}
	// A fourth connection subscribed elsewhere gets nothing.
	other := s.NewInbox(acc.Key, "other")
	c4 := dialWS(t, s, acc.Key)
	c4.subscribe([]string{other}, nil)

	evts := []string{s.Inbound(acc.Key, in, "1"), s.Inbound(acc.Key, in, "2"), s.Inbound(acc.Key, in, "3")}
	for i, c := range cs {
		for _, want := range evts {
			if got := c.expectEvent(); got != want {
				t.Fatalf("conn %d got %s, want %s (one account's events arrive in order)", i, got, want)
			}
		}
	}
	notDelivered(t, s, acc.Key, evts[2], c4)
	if st := s.EventStatus(acc.Key, evts[0]); st != "delivered" {
		t.Fatalf("status %s", st)
	}
}

func TestWSDeletedInboxLeavesSubscriptions(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in1, in2 := s.NewInbox(acc.Key, "one"), s.NewInbox(acc.Key, "two")
	c := dialWS(t, s, acc.Key)
	c.subscribe([]string{in1, in2}, nil)
	if code, body, _ := s.Do("DELETE", "/v1/inboxes/"+in1, acc.Key, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	f := c.subscribe([]string{in2}, nil)
	if got := f.strs("inbox_ids"); !slices.Equal(got, []string{in2}) {
		t.Fatalf("deleted inbox still subscribed: %v", got)
	}
}

func TestWSBadFramesKeepConnectionAndSubscription(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	c := dialWS(t, s, acc.Key)
	c.subscribe([]string{in}, nil)

	f := func(frame, want string) {
		t.Helper()
		c.sendText(frame)
		c.expectError(want)
	}
	f(`not json`, "invalid JSON")
	f(`{"type":`, "invalid JSON")
	f(`[1,2]`, "JSON object")
	f(`"subscribe"`, "JSON object")
	f(`{}`, `missing "type"`)
	f(`{"type":""}`, `missing "type"`)
	f(`{"type":"hello"}`, "unknown type")
	f(`{"type":7}`, `"type" must be a string`)
	f(`{"type":"subscribe","inbox_ids":"inb_x"}`, `"inbox_ids" must be an array of strings`)
	f(`{"type":"subscribe","inbox_ids":[1]}`, `"inbox_ids" must be an array of strings`)
	f(`{"type":"subscribe","event_types":{}}`, `"event_types" must be an array of strings`)
	f(`{"type":"subscribe","last_event_id":5}`, `"last_event_id" must be a string`)
	f(`{"type":"ack"}`, `ack needs "event_id"`)
	f(`{"type":"ack","event_id":"evt_nope"}`, "malformed event_id")
	f(`{"type":"ack","event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF4"}`, "unknown event_id")
	f(`{"type":"unsubscribe","inbox_ids":["x"]}`, "malformed inbox id")
	f(`{"type":"ping"} {"type":"ping"}`, "data after the object")

	// Binary frames are refused with an error frame; the connection stays.
	if err := c.conn.WriteMessage(2, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError("binary frames are not supported")

	// Fields that do not belong to the frame type make it a bad frame
	// (an unsubscribe with event_types used to unsubscribe everything; a
	// misspelt field used to be ignored).
	f(`{"type":"ping","future_field":true}`, `ping takes no fields, not "future_field"`)
	f(`{"type":"unsubscribe","event_types":["message.received"]}`, `unsubscribe takes only inbox_ids, not "event_types"`)
	f(`{"type":"subscribe","inboxIds":["inb_01M8C9RB9X5V865CKTKNCS7WF4"]}`, `subscribe takes only inbox_ids, event_types, last_event_id, ack, not "inboxIds"`)
	f(`{"type":"ack","event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF4","inbox_ids":[]}`, `ack takes only event_id, not "inbox_ids"`)
	f(`{"type":"subscribe","ack":"yes"}`, `"ack" must be a boolean`)

	// The subscription is unchanged: events still arrive.
	e := s.Inbound(acc.Key, in, "still here")
	if got := c.expectEvent(); got != e {
		t.Fatalf("got %s, want %s", got, e)
	}
}

func TestWSAckIsRecorded(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	c := dialWS(t, s, acc.Key)
	c.subscribe(nil, nil)
	e := s.Inbound(acc.Key, in, "ack me")
	if got := c.expectEvent(); got != e {
		t.Fatal(got)
	}
	c.send(map[string]string{"type": "ack", "event_id": e})
	testserver.WaitFor(t, 5*time.Second, "ackedAt recorded", func() bool {
		var out struct{ AckedAt *string }
		s.MustJSON("GET", "/v1/events/"+e, acc.Key, nil, http.StatusOK, &out)
		return out.AckedAt != nil
	})
	// Another account's key cannot ack it.
	b := s.NewAccount("b")
	cb := dialWS(t, s, b.Key)
	cb.send(map[string]string{"type": "ack", "event_id": e})
	cb.expectError("unknown event_id")
}

func containsStr(s, sub string) bool {
	return len(sub) > 0 && len(s) >= len(sub) && stringsContains(s, sub)
}
