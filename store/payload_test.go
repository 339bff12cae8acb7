package store

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The event size cap (PROTOCOL.md §5): every attempt's whole frame fits,
// body_html is cut before body_text, cuts end on rune boundaries, and the
// message says truncated only when something was cut.
func TestRenderMessageEventCap(t *testing.T) {
	at := time.Date(2026, 2, 24, 10, 5, 0, 12000000, time.UTC)
	type msg struct {
		BodyText    string `json:"body_text"`
		BodyHTML    string `json:"body_html"`
		Truncated   bool   `json:"truncated"`
		Attachments []any  `json:"attachments"`
	}
	f := func(name string, m *Message, max int, check func(got msg)) {
		t.Helper()
		head, tail := RenderMessageEvent("evt_01M8C9RB9X5V865CKTKNCS7WF4", m, max)
		payload := (&Event{Head: head, Tail: tail}).AppendPayload(nil, 1_000_000_000, at)
		if max > 0 && len(payload)+frameHeaderMax > max {
			t.Fatalf("%s: frame of %d bytes over the %d cap", name, len(payload)+frameHeaderMax, max)
		}
		var p struct{ Message msg }
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Fatalf("%s: not JSON: %v", name, err)
		}
		if !utf8.ValidString(p.Message.BodyText) || !utf8.ValidString(p.Message.BodyHTML) {
			t.Fatalf("%s: a cut split a rune", name)
		}
		if !strings.HasPrefix(m.BodyText, p.Message.BodyText) || !strings.HasPrefix(m.BodyHTML, p.Message.BodyHTML) {
			t.Fatalf("%s: bodies are not prefixes of the message's", name)
		}
		check(p.Message)
	}
	base := func(text, html string) *Message {
		return &Message{ID: "msg_1", InboxID: "inb_1", ThreadID: "thr_1", From: "a@b.c", To: "agent@x",
			Subject: "s", BodyText: text, BodyHTML: html, ReceivedAt: at,
			Attachments: []AttachmentMeta{{Filename: "a.pdf", ContentType: "application/pdf", SizeBytes: 10}}}
	}
	small := base("hello", "<p>hello</p>")
	f("small: untouched", small, 4096, func(g msg) {
		if g.Truncated || g.BodyText != "hello" || g.BodyHTML != "<p>hello</p>" {
			t.Fatalf("%+v", g)
		}
	})
	big := strings.Repeat("é日本🎉\"\\\n", 40_000)
	f("html cut first", base("short text", big), 64<<10, func(g msg) {
		if !g.Truncated || g.BodyText != "short text" || g.BodyHTML == "" || len(g.BodyHTML) >= len(big) {
			t.Fatalf("truncated %v, text %q, html %d bytes", g.Truncated, g.BodyText, len(g.BodyHTML))
		}
	})
	f("then text", base(big, big), 64<<10, func(g msg) {
		if !g.Truncated || g.BodyHTML != "" || g.BodyText == "" || len(g.BodyText) >= len(big) {
			t.Fatalf("truncated %v, text %d, html %d bytes", g.Truncated, len(g.BodyText), len(g.BodyHTML))
		}
	})
	f("exactly at the cap is not cut", small, 0, func(g msg) {})
	many := base("t", "")
	for i := 0; i < 5000; i++ {
		many.Attachments = append(many.Attachments, AttachmentMeta{Filename: strings.Repeat("x", 100), ContentType: "text/plain"})
	}
	f("attachments cut last", many, 16<<10, func(g msg) {
		if !g.Truncated || len(g.Attachments) == 0 || len(g.Attachments) >= len(many.Attachments) {
			t.Fatalf("truncated %v, %d attachments", g.Truncated, len(g.Attachments))
		}
	})
	// The measured size is the rendered size: a frame exactly at the cap
	// is whole, one byte more is cut.
	for _, m := range []*Message{small, base(big[:5000], ""), base("", big[:7000]), base(big[:3000], big[:3000])} {
		h, tl := RenderMessageEvent("evt_01M8C9RB9X5V865CKTKNCS7WF4", m, 0)
		exact := len(h) + len(tl) + attemptFieldsMax + frameHeaderMax
		if _, tl2 := RenderMessageEvent("evt_01M8C9RB9X5V865CKTKNCS7WF4", m, exact); string(tl2) != string(tl) {
			t.Fatalf("a frame of exactly the cap (%d) was cut", exact)
		}
		if _, tl2 := RenderMessageEvent("evt_01M8C9RB9X5V865CKTKNCS7WF4", m, exact-1); !strings.Contains(string(tl2), `"truncated":true`) {
			t.Fatalf("a frame one byte over the cap (%d) was not cut", exact-1)
		}
	}
	for max := 2048; max < 4096; max += 7 { // every cut point, around escapes and multibyte runes
		f("sweep", base(big[:3000], big[:3000]), max, func(g msg) {})
	}
}
