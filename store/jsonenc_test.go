package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// The reference shapes, encoded by encoding/json.
type refMessage struct {
	ID           string          `json:"id"`
	RFCMessageID string          `json:"rfc_message_id"`
	From         string          `json:"from"`
	To           string          `json:"to"`
	Cc           []string        `json:"cc"`
	Subject      string          `json:"subject"`
	BodyText     string          `json:"body_text"`
	BodyHTML     string          `json:"body_html,omitempty"`
	Attachments  []refAttachment `json:"attachments"`
	AttsCut      bool            `json:"attachments_truncated,omitempty"`
	Truncated    bool            `json:"truncated,omitempty"`
	ReceivedAt   string          `json:"received_at"`
}

type refAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	SizeBytes   int    `json:"sizeBytes"`
	URL         string `json:"url"`
}

type refPayload struct {
	Event       string     `json:"event"`
	EventID     string     `json:"event_id"`
	OccurredAt  string     `json:"occurred_at"`
	DeliveredAt string     `json:"delivered_at"`
	Attempt     int        `json:"attempt"`
	InboxID     string     `json:"inbox_id"`
	ThreadID    string     `json:"thread_id"`
	Message     refMessage `json:"message"`
}

func stdJSON(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func checkEncoders(t testing.TB, s string) {
	m := &Message{ID: "msg_1", InboxID: "inb_" + s, AccountID: "acc", ThreadID: "thr", RFCMessageID: "<" + s + ">",
		From: s + " <a@b.c>", To: "agent@x", Cc: []string{s, "c@d"}, Subject: s, BodyText: s, BodyHTML: s,
		Attachments: []AttachmentMeta{{Filename: s, ContentType: "text/plain", SizeBytes: 7}},
		ReceivedAt:  time.Date(2026, 2, 24, 10, 5, 0, 120000000, time.UTC), RawSize: 99,
		AttachmentsTruncated: len(s)%2 == 1}
	if got, want := appendMessageJSON(nil, m), stdJSON(t, m); !bytes.Equal(got, want) {
		t.Fatalf("message record for %q:\n got %s\nwant %s", s, got, want)
	}
	at := time.Date(2026, 2, 24, 10, 5, 0, 12000000, time.UTC)
	head, tail := RenderMessageEvent("evt_"+s, m, 0)
	got := (&Event{Head: head, Tail: tail}).AppendPayload(nil, 3, at)
	want := stdJSON(t, refPayload{
		Event: EventMessageReceived, EventID: "evt_" + s, OccurredAt: "2026-02-24T10:05:00.120Z",
		DeliveredAt: "2026-02-24T10:05:00.012Z", Attempt: 3, InboxID: m.InboxID, ThreadID: m.ThreadID,
		Message: refMessage{ID: m.ID, RFCMessageID: m.RFCMessageID, From: m.From, To: m.To, Cc: m.Cc,
			Subject: s, BodyText: s, BodyHTML: s, ReceivedAt: "2026-02-24T10:05:00.120Z",
			Attachments: []refAttachment{{s, "text/plain", 7, AttachmentURL(m.ID, s)}}, AttsCut: m.AttachmentsTruncated},
	})
	if !bytes.Equal(got, want) {
		t.Fatalf("payload for %q:\n got %s\nwant %s", s, got, want)
	}
}

func TestJSONEncodersMatchEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "<b>&amp;</b>", "line\nbreak\r\ttab\b\f",
		"\x00\x01\x1f", "café 日本語 🎉", "bad \xff utf8 \xc3", "sep \u2028 \u2029", "\x7f del"} {
		checkEncoders(t, s)
	}
}

func FuzzJSONEncoders(f *testing.F) {
	f.Add("plain")
	f.Add("\xff\u2028<\"\\\x00")
	f.Fuzz(func(t *testing.T, s string) { checkEncoders(t, s) })
}
