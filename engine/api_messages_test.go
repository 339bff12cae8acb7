package engine_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

func TestAPIMessageListAndGet(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "msgs"})
	const n = 7
	var sent []inboundReply
	for i := range n {
		r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": testserver.Sprintf("m%d", i), "text": "t"})
		sent = append(sent, r)
	}
	var l listOf[message]
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/messages", a.Key, &l)
	if l.Total != n || len(l.Data) != n {
		t.Fatalf("list: total %d, %d items", l.Total, len(l.Data))
	}
	for i, m := range l.Data { // newest first
		if m.ID != sent[n-1-i].MessageID {
			t.Fatalf("item %d is %s, want %s (newest first)", i, m.ID, sent[n-1-i].MessageID)
		}
	}
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/messages?limit=3&offset=2", a.Key, &l)
	if l.Total != n || len(l.Data) != 3 || l.Data[0].ID != sent[n-3].MessageID || l.Data[2].ID != sent[n-5].MessageID {
		t.Fatalf("limit=3&offset=2: %+v", l)
	}
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/messages?limit=101", a.Key, &l) // clamped to 100
	if l.Total != n || len(l.Data) != n {
		t.Fatalf("limit=101: total %d, %d items", l.Total, len(l.Data))
	}
	checkErr(t, s, "GET", "/v1/inboxes/"+in.ID+"/messages?offset=-3", a.Key, nil, http.StatusBadRequest, "bad_request")

	// Every documented field is present, with the documented JSON types.
	_, body, _ := call(s, "GET", "/v1/messages/"+sent[0].MessageID, a.Key, nil)
	keys := jsonKeys(t, body)
	want := []string{"id", "inboxId", "threadId", "rfcMessageId", "from", "to", "cc", "subject", "bodyText", "bodyHtml", "attachments", "receivedAt"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("message fields %v, want %v", keys, want)
	}
	var raw map[string]any
	mustDecode(t, "message", body, &raw)
	if _, ok := raw["cc"].([]any); !ok {
		t.Errorf("cc must be an array, got %s", body)
	}
	if _, ok := raw["attachments"].([]any); !ok {
		t.Errorf("attachments must be an array, got %s", body)
	}
	if raw["bodyHtml"] != nil {
		t.Errorf("bodyHtml of a text-only message must be null, got %v", raw["bodyHtml"])
	}
	checkErr(t, s, "GET", "/v1/messages/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/messages/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P/raw", a.Key, nil, http.StatusNotFound, "not_found")
}

func TestAPIMessageAttachments(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "atts"})
	pdf := []byte("%PDF-1.4\n\x00\x01\x02binary\xff")
	csv := []byte("a,b\n1,2\n")
	r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{
		"from": "c@example.com", "subject": "files", "text": "see attached",
		"attachments": []map[string]string{
			{"filename": "invoice.pdf", "contentType": "application/pdf", "contentBase64": base64.StdEncoding.EncodeToString(pdf)},
			{"filename": "my report 100%.csv", "contentType": "text/csv", "contentBase64": base64.StdEncoding.EncodeToString(csv)},
		},
	})
	var m message
	mustGet(t, s, "/v1/messages/"+r.MessageID, a.Key, &m)
	if len(m.Attachments) != 2 {
		t.Fatalf("attachments: %+v", m.Attachments)
	}
	wantData := map[string][]byte{"invoice.pdf": pdf, "my report 100%.csv": csv}
	wantType := map[string]string{"invoice.pdf": "application/pdf", "my report 100%.csv": "text/csv"}
	for _, att := range m.Attachments {
		data, ok := wantData[att.Filename]
		if !ok {
			t.Fatalf("unexpected attachment %+v", att)
		}
		if att.ContentType != wantType[att.Filename] || att.SizeBytes != len(data) {
			t.Errorf("attachment meta %+v", att)
		}
		wantURL := "/v1/attachments/" + r.MessageID + "/" + url.PathEscape(att.Filename)
		if att.URL != wantURL {
			t.Errorf("url %q, want %q", att.URL, wantURL)
		}
		st, got, h := call(s, "GET", att.URL, a.Key, nil)
		if st != http.StatusOK || !bytes.Equal(got, data) {
			t.Fatalf("GET %s: %d %q", att.URL, st, got)
		}
		if mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")); mt != wantType[att.Filename] {
			t.Errorf("%s: Content-Type %q", att.Filename, h.Get("Content-Type"))
		}
		disp, params, err := mime.ParseMediaType(h.Get("Content-Disposition"))
		if err != nil || disp != "attachment" || params["filename"] != att.Filename {
			t.Errorf("%s: Content-Disposition %q", att.Filename, h.Get("Content-Disposition"))
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", att.Filename)
		}
	}
	// Same names are made unique; names needing escapes round-trip.
	dup, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "dup",
		"attachments": []map[string]string{
			{"filename": "a.txt", "contentBase64": base64.StdEncoding.EncodeToString([]byte("one"))},
			{"filename": "a.txt", "contentBase64": base64.StdEncoding.EncodeToString([]byte("two"))},
			{"filename": `résumé "q";x?.pdf`, "contentType": "application/pdf", "contentBase64": base64.StdEncoding.EncodeToString([]byte("three"))},
			{"filename": "../../etc/passwd", "contentBase64": base64.StdEncoding.EncodeToString([]byte("four"))},
		}})
	var dm message
	mustGet(t, s, "/v1/messages/"+dup.MessageID, a.Key, &dm)
	seen := map[string]bool{}
	var bodies []string
	for _, att := range dm.Attachments {
		if seen[att.Filename] || strings.Contains(att.Filename, "/") {
			t.Errorf("attachment name %q repeated or not a plain name", att.Filename)
		}
		seen[att.Filename] = true
		st, got, h := call(s, "GET", att.URL, a.Key, nil)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d %s", att.URL, st, got)
		}
		if _, params, err := mime.ParseMediaType(h.Get("Content-Disposition")); err != nil || params["filename"] != att.Filename {
			t.Errorf("%s: Content-Disposition %q", att.URL, h.Get("Content-Disposition"))
		}
		bodies = append(bodies, string(got))
	}
	if strings.Join(bodies, ",") != "one,two,three,four" {
		t.Errorf("attachment bodies %q", bodies)
	}

	checkErr(t, s, "GET", "/v1/attachments/"+r.MessageID+"/nope.pdf", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/attachments/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P/invoice.pdf", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/attachments/not-an-id/invoice.pdf", a.Key, nil, http.StatusBadRequest, "bad_request")

	// The event payload lists the same attachments.
	var ev eventView
	mustGet(t, s, "/v1/events/"+r.EventID, a.Key, &ev)
	var p struct {
		Message struct {
			Attachments []attachment `json:"attachments"`
		} `json:"message"`
	}
	mustDecode(t, "payload", ev.Event, &p)
	if !reflect.DeepEqual(p.Message.Attachments, m.Attachments) {
		t.Errorf("payload attachments %+v, message attachments %+v", p.Message.Attachments, m.Attachments)
	}
}

// TestAPIEventShape checks GET /v1/events/{id} field by field against
// PROTOCOL.md §5 and API.md, for an event that failed on every attempt
// (no WebSocket, no webhook).
func TestAPIEventShape(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "agent"})
	r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{
		"from": "Customer <customer@example.com>", "subject": "Re: Your order", "text": "Thanks for following up...",
		"messageId": "<original@message.id>", "cc": []string{"cc@example.com"},
	})
	testserver.WaitFor(t, 10*time.Second, "event failed", func() bool { return s.EventStatus(a.Key, r.EventID) == "failed" })

	_, body, _ := call(s, "GET", "/v1/events/"+r.EventID, a.Key, nil)
	top := jsonKeys(t, body)
	for _, k := range []string{"event", "status", "deliveredVia", "attempts", "nextAttemptAt"} {
		if !strings.Contains(","+strings.Join(top, ",")+",", ","+k+",") {
			t.Errorf("event view lacks %q: %s", k, body)
		}
	}
	var ev eventView
	mustDecode(t, "event", body, &ev)
	if ev.Status != "failed" || ev.DeliveredVia != nil || ev.NextAttemptAt != nil {
		t.Errorf("status %q deliveredVia %v nextAttemptAt %v", ev.Status, ev.DeliveredVia, ev.NextAttemptAt)
	}
	if len(ev.Attempts) != 2 {
		t.Fatalf("attempts %+v, want 2 (the retry schedule's length)", ev.Attempts)
	}
	for i, at := range ev.Attempts {
		if at.N != i+1 || at.Channel != "none" || at.OK || at.Error == "" || at.DurationMs == nil || *at.DurationMs < 0 {
			t.Errorf("attempt %d: %+v", i, at)
		}
		if !apiTimeRE.MatchString(at.At) {
			t.Errorf("attempt %d at %q is not in the API time format", i, at.At)
		}
	}
	_, body, _ = call(s, "GET", "/v1/events/"+r.EventID, a.Key, nil)
	var rawView struct {
		Attempts []map[string]any `json:"attempts"`
	}
	mustDecode(t, "attempts", body, &rawView)
	for _, at := range rawView.Attempts {
		if _, has := at["httpStatus"]; has {
			t.Errorf("an attempt without HTTP has httpStatus: %v", at)
		}
	}

	// The payload: PROTOCOL.md §5, in its documented order.
	wantTop := []string{"event", "event_id", "occurred_at", "delivered_at", "attempt", "inbox_id", "thread_id", "message"}
	if got := jsonKeys(t, ev.Event); !reflect.DeepEqual(got, wantTop) {
		t.Errorf("payload fields %v, want %v", got, wantTop)
	}
	var p struct {
		Event       string          `json:"event"`
		EventID     string          `json:"event_id"`
		OccurredAt  string          `json:"occurred_at"`
		DeliveredAt string          `json:"delivered_at"`
		Attempt     int             `json:"attempt"`
		InboxID     string          `json:"inbox_id"`
		ThreadID    string          `json:"thread_id"`
		Message     json.RawMessage `json:"message"`
	}
	mustDecode(t, "payload", ev.Event, &p)
	if p.Event != "message.received" || p.EventID != r.EventID || p.InboxID != in.ID || p.ThreadID != r.ThreadID || p.Attempt != 2 {
		t.Errorf("payload %s", ev.Event)
	}
	if !apiTimeRE.MatchString(p.OccurredAt) || !apiTimeRE.MatchString(p.DeliveredAt) || p.DeliveredAt != ev.Attempts[1].At {
		t.Errorf("payload times occurred_at %q delivered_at %q (last attempt at %q)", p.OccurredAt, p.DeliveredAt, ev.Attempts[1].At)
	}
	wantMsg := []string{"id", "rfc_message_id", "from", "to", "cc", "subject", "body_text", "attachments", "received_at"}
	if got := jsonKeys(t, p.Message); !reflect.DeepEqual(got, wantMsg) {
		t.Errorf("payload message fields %v, want %v", got, wantMsg)
	}
	var pm struct {
		ID           string   `json:"id"`
		RFCMessageID string   `json:"rfc_message_id"`
		From         string   `json:"from"`
		To           any      `json:"to"`
		Cc           []string `json:"cc"`
		Subject      string   `json:"subject"`
		BodyText     string   `json:"body_text"`
		Attachments  []any    `json:"attachments"`
		ReceivedAt   string   `json:"received_at"`
	}
	mustDecode(t, "payload message", p.Message, &pm)
	if pm.ID != r.MessageID || pm.RFCMessageID != "<original@message.id>" || !strings.Contains(pm.From, "customer@example.com") ||
		pm.To != "agent@mail.test" || len(pm.Cc) != 1 || pm.Subject != "Re: Your order" ||
		!strings.Contains(pm.BodyText, "Thanks for following up...") || pm.Attachments == nil || !apiTimeRE.MatchString(pm.ReceivedAt) {
		t.Errorf("payload message %s", p.Message)
	}
	if pm.ReceivedAt != p.OccurredAt {
		t.Errorf("received_at %q, occurred_at %q", pm.ReceivedAt, p.OccurredAt)
	}
}

func TestAPIEventListAndRedeliver(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in1 := createInbox(t, s, a.Key, map[string]any{"mailboxName": "one"})
	in2 := createInbox(t, s, a.Key, map[string]any{"mailboxName": "two"})
	var sent []string
	for i := range 6 {
		in := in1
		if i%2 == 1 {
			in = in2
		}
		sent = append(sent, s.Inbound(a.Key, in.ID, testserver.Sprintf("s%d", i)))
	}
	testserver.WaitFor(t, 10*time.Second, "every event failed", func() bool {
		var l listOf[eventSummary]
		mustGet(t, s, "/v1/events?status=failed", a.Key, &l)
		return l.Total == len(sent)
	})

	var l listOf[eventSummary]
	mustGet(t, s, "/v1/events", a.Key, &l)
	if l.Total != 6 || len(l.Data) != 6 {
		t.Fatalf("list: %+v", l)
	}
	for i, e := range l.Data {
		if e.ID != sent[5-i] {
			t.Fatalf("item %d is %s, want %s (newest first)", i, e.ID, sent[5-i])
		}
		if e.Type != "message.received" || e.Status != "failed" || e.Attempts != 2 || e.DeliveredVia != nil || !apiTimeRE.MatchString(e.OccurredAt) {
			t.Errorf("summary %+v", e)
		}
	}
	mustGet(t, s, "/v1/events?inboxId="+in2.ID, a.Key, &l)
	if l.Total != 3 || l.Data[0].ID != sent[5] || l.Data[2].ID != sent[1] {
		t.Fatalf("inboxId filter: %+v", l)
	}
	for _, e := range l.Data {
		if e.InboxID != in2.ID {
			t.Fatalf("inboxId filter returned %+v", e)
		}
	}
	mustGet(t, s, "/v1/events?inboxId="+in1.ID+"&status=failed&limit=2&offset=1", a.Key, &l)
	if l.Total != 3 || len(l.Data) != 2 || l.Data[0].ID != sent[2] || l.Data[1].ID != sent[0] {
		t.Fatalf("inboxId+status+page: %+v", l)
	}
	for _, st := range []string{"pending", "delivered"} {
		mustGet(t, s, "/v1/events?status="+st, a.Key, &l)
		if l.Total != 0 || l.Data == nil {
			t.Fatalf("status=%s: %+v", st, l)
		}
	}
	checkErr(t, s, "GET", "/v1/events?status=lost", a.Key, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/v1/events?status=FAILED", a.Key, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/v1/events?inboxId=nope", a.Key, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/v1/events?limit=0", a.Key, nil, http.StatusBadRequest, "bad_request")

	// Redeliver: 202, a new cycle whose attempts are recorded.
	evt := sent[0]
	var red map[string]any
	s.MustJSON("POST", "/v1/events/"+evt+"/redeliver", a.Key, nil, http.StatusAccepted, &red)
	testserver.WaitFor(t, 10*time.Second, "redelivery cycle ran", func() bool {
		var ev eventView
		mustGet(t, s, "/v1/events/"+evt, a.Key, &ev)
		return ev.Status == "failed" && len(ev.Attempts) == 4
	})
	var ev eventView
	mustGet(t, s, "/v1/events/"+evt, a.Key, &ev)
	for i, at := range ev.Attempts {
		if at.N != i+1 || at.Channel != "none" || at.OK {
			t.Errorf("attempt %d after redeliver: %+v", i, at)
		}
	}
	var p struct {
		Attempt int `json:"attempt"`
	}
	mustDecode(t, "payload", ev.Event, &p)
	if p.Attempt != 4 {
		t.Errorf("payload attempt %d after 4 attempts", p.Attempt)
	}
	checkErr(t, s, "POST", "/v1/events/evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P/redeliver", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/events/evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "POST", "/v1/events/"+sent[0]+"x/redeliver", a.Key, nil, http.StatusBadRequest, "bad_request")
}

// TestAPIEventPending: an event waiting for its first attempt shows
// status pending, no attempts ([] not null) and when the next one is due.
func TestAPIEventPending(t *testing.T) {
	t.Parallel()
	s := startAPI(t, func(c *app.Config) { c.Delivery.Schedule = []time.Duration{time.Hour} })
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "later")
	evt := s.Inbound(a.Key, in, "later")

	_, body, _ := call(s, "GET", "/v1/events/"+evt, a.Key, nil)
	if !strings.Contains(string(body), `"attempts":[]`) {
		t.Errorf("attempts of a fresh event must be []: %s", body)
	}
	var ev eventView
	mustDecode(t, "event", body, &ev)
	if ev.Status != "pending" || ev.DeliveredVia != nil || len(ev.Attempts) != 0 || ev.NextAttemptAt == nil {
		t.Fatalf("pending event %s", body)
	}
	var p struct {
		OccurredAt  string `json:"occurred_at"`
		DeliveredAt string `json:"delivered_at"`
		Attempt     int    `json:"attempt"`
	}
	mustDecode(t, "payload", ev.Event, &p)
	occurred, err1 := time.Parse(time.RFC3339, p.OccurredAt)
	next, err2 := time.Parse(time.RFC3339, *ev.NextAttemptAt)
	// The first delay counts from when the event was stored, a few ms
	// after it occurred.
	if d := next.Sub(occurred); err1 != nil || err2 != nil || !apiTimeRE.MatchString(*ev.NextAttemptAt) || d < time.Hour || d > time.Hour+time.Second {
		t.Errorf("nextAttemptAt %q, occurred_at %q: want one hour later", *ev.NextAttemptAt, p.OccurredAt)
	}
	if p.Attempt != 1 || p.DeliveredAt != p.OccurredAt {
		t.Errorf("payload before any attempt: attempt %d delivered_at %q occurred_at %q", p.Attempt, p.DeliveredAt, p.OccurredAt)
	}
	var l listOf[eventSummary]
	mustGet(t, s, "/v1/events?status=pending", a.Key, &l)
	if l.Total != 1 || l.Data[0].NextAttemptAt == nil || *l.Data[0].NextAttemptAt != *ev.NextAttemptAt || l.Data[0].Attempts != 0 {
		t.Fatalf("pending list %+v", l)
	}
	// Redeliver makes it due now.
	s.MustJSON("POST", "/v1/events/"+evt+"/redeliver", a.Key, nil, http.StatusAccepted, nil)
	testserver.WaitFor(t, 10*time.Second, "an attempt after redeliver", func() bool {
		var ev eventView
		mustGet(t, s, "/v1/events/"+evt, a.Key, &ev)
		return len(ev.Attempts) == 1 && ev.Attempts[0].Channel == "none"
	})
}

// TestAPIEventDeliveredViaWebSocket: the event view of a WebSocket
// delivery.
func TestAPIEventDeliveredViaWebSocket(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "wsbox")
	conn, _, err := websocket.DefaultDialer.Dial(s.WSURL, http.Header{"Authorization": {"Bearer " + a.Key}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteJSON(map[string]any{"type": "subscribe"}); err != nil {
		t.Fatal(err)
	}
	var sub map[string]any
	if err := conn.ReadJSON(&sub); err != nil || sub["type"] != "subscribed" {
		t.Fatalf("subscribe: %v %v", sub, err)
	}
	evt := s.Inbound(a.Key, in, "live")
	var frame json.RawMessage
	if err := conn.ReadJSON(&frame); err != nil {
		t.Fatal(err)
	}
	testserver.WaitFor(t, 10*time.Second, "delivered", func() bool { return s.EventStatus(a.Key, evt) == "delivered" })
	var ev eventView
	mustGet(t, s, "/v1/events/"+evt, a.Key, &ev)
	if ev.DeliveredVia == nil || *ev.DeliveredVia != "websocket" || len(ev.Attempts) != 1 || ev.Attempts[0].Channel != "websocket" ||
		!ev.Attempts[0].OK || ev.Attempts[0].HTTPStatus != 0 || ev.NextAttemptAt != nil {
		t.Fatalf("event view %+v", ev)
	}
	// The frame is the payload of that attempt, the API shows the same.
	if !bytes.Equal(frame, ev.Event) {
		t.Errorf("WebSocket frame and API payload differ:\n%s\n%s", frame, ev.Event)
	}
	var l listOf[eventSummary]
	mustGet(t, s, "/v1/events?status=delivered", a.Key, &l)
	if l.Total != 1 || l.Data[0].DeliveredVia == nil || *l.Data[0].DeliveredVia != "websocket" {
		t.Fatalf("delivered list %+v", l)
	}
}
