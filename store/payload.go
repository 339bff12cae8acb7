package store

import (
	"net/url"
	"strconv"
	"unicode/utf8"
)

// EventMessageReceived is the event type of an inbound message.
const EventMessageReceived = "message.received"

// DefaultMaxEventBytes is --max-event-bytes' default (PROTOCOL.md §5): below
// every common client's default message limit (Python websockets: 1 MiB).
const DefaultMaxEventBytes = 256 << 10

// attemptFieldsMax is the most the per-attempt fields add to a payload
// (`,"delivered_at":"…","attempt":<n>` with a 10-digit attempt), and
// frameHeaderMax the longest WebSocket frame header: the cap counts the
// whole frame.
const (
	attemptFieldsMax = len(`,"delivered_at":"2006-01-02T15:04:05.000Z","attempt":`) + 10
	frameHeaderMax   = 10
)

// RenderMessageEvent encodes the message.received payload of message m
// around the per-attempt fields (see Event). The payload is not stored:
// it is rendered from the message record, which holds the same data. The
// field order is PROTOCOL.md §5's.
//
// With maxBytes > 0 the whole frame of any attempt fits in maxBytes: when
// it would not, body_html is cut first (down to nothing), then body_text,
// each on a UTF-8 boundary, then attachments from the end of the list, and
// the message says "truncated": true. The REST API keeps the whole message.
func RenderMessageEvent(evtID string, m *Message, maxBytes int) (head, tail []byte) {
	return RenderMessageEventAt(evtID, m, maxBytes, "")
}

// RenderMessageEventAt is RenderMessageEvent with attachment URLs made
// absolute on base (--public-url, e.g. "https://mail.example.com"; ""
// keeps them relative).
func RenderMessageEventAt(evtID string, m *Message, maxBytes int, base string) (head, tail []byte) {
	head = renderHead(evtID, m)
	if maxBytes <= 0 {
		return head, renderTail(m, m.BodyText, m.BodyHTML, len(m.Attachments), false, base)
	}
	// Measure before rendering: a message far over the cap (a 20 MiB
	// body) is not encoded whole only to be cut.
	bare := renderTail(m, "", "", len(m.Attachments), true, base)
	full := len(bare) - len(`,"truncated":true`) + jsonStringLen(m.BodyText) - len(`""`)
	if m.BodyHTML != "" {
		full += len(`,"body_html":`) + jsonStringLen(m.BodyHTML)
	}
	if len(head)+full+attemptFieldsMax+frameHeaderMax <= maxBytes {
		return head, renderTail(m, m.BodyText, m.BodyHTML, len(m.Attachments), false, base)
	}
	// What is left for the bodies.
	budget := maxBytes - len(head) - len(bare) - attemptFieldsMax - frameHeaderMax
	atts := len(m.Attachments)
	for budget < 0 && atts > 0 { // drop attachments from the end (each with its comma)
		atts--
		budget += len(appendAttachment(nil, m.ID, &m.Attachments[atts], base)) + min(atts, 1)
	}
	text := cutJSON(m.BodyText, budget)
	budget -= jsonStringLen(text) - 2 // the empty string's quotes are in bare
	html := cutJSON(m.BodyHTML, budget)
	if html != "" {
		html = cutJSON(m.BodyHTML, budget-len(`,"body_html":`))
	}
	return head, renderTail(m, text, html, atts, true, base)
}

func renderHead(evtID string, m *Message) []byte {
	head := make([]byte, 0, 96+len(evtID))
	head = append(head, `{"event":"`+EventMessageReceived+`","event_id":`...)
	head = appendJSONString(head, evtID)
	head = append(head, `,"occurred_at":"`...)
	head = AppendTime(head, m.ReceivedAt)
	return append(head, '"')
}

// renderTail encodes the payload after the per-attempt fields, with the
// given bodies and the first atts attachments.
func renderTail(m *Message, text, html string, atts int, truncated bool, base string) []byte {
	tail := make([]byte, 0, 384+len(text)+len(html)+len(m.Subject)+len(m.From))
	tail = append(tail, `,"inbox_id":`...)
	tail = appendJSONString(tail, m.InboxID)
	tail = append(tail, `,"thread_id":`...)
	tail = appendJSONString(tail, m.ThreadID)
	tail = append(tail, `,"message":{"id":`...)
	tail = appendJSONString(tail, m.ID)
	tail = append(tail, `,"rfc_message_id":`...)
	tail = appendJSONString(tail, m.RFCMessageID)
	tail = append(tail, `,"from":`...)
	tail = appendJSONString(tail, m.From)
	tail = append(tail, `,"to":`...)
	tail = appendJSONString(tail, m.To)
	tail = append(tail, `,"cc":`...)
	if m.Cc == nil {
		tail = append(tail, "[]"...)
	} else {
		tail = appendJSONStrings(tail, m.Cc)
	}
	tail = append(tail, `,"subject":`...)
	tail = appendJSONString(tail, m.Subject)
	tail = append(tail, `,"body_text":`...)
	tail = appendJSONString(tail, text)
	if html != "" {
		tail = append(tail, `,"body_html":`...)
		tail = appendJSONString(tail, html)
	}
	tail = append(tail, `,"attachments":[`...)
	for i := range m.Attachments[:atts] {
		if i > 0 {
			tail = append(tail, ',')
		}
		tail = appendAttachment(tail, m.ID, &m.Attachments[i], base)
	}
	tail = append(tail, ']')
	if m.AttachmentsTruncated {
		tail = append(tail, `,"attachments_truncated":true`...)
	}
	if truncated {
		tail = append(tail, `,"truncated":true`...)
	}
	tail = append(tail, `,"received_at":"`...)
	tail = AppendTime(tail, m.ReceivedAt)
	return append(tail, `"}}`...)
}

func appendAttachment(dst []byte, msgID string, a *AttachmentMeta, base string) []byte {
	dst = append(dst, `{"filename":`...)
	dst = appendJSONString(dst, a.Filename)
	dst = append(dst, `,"contentType":`...)
	dst = appendJSONString(dst, a.ContentType)
	dst = append(dst, `,"sizeBytes":`...)
	dst = strconv.AppendInt(dst, int64(a.SizeBytes), 10)
	dst = append(dst, `,"url":`...)
	dst = appendJSONString(dst, base+AttachmentURL(msgID, a.Filename))
	return append(dst, '}')
}

// cutJSON returns the longest prefix of s, ending on a rune boundary,
// whose JSON string encoding (quotes included) takes at most budget
// bytes; "" when not even the quotes fit.
func cutJSON(s string, budget int) string {
	n := 2 // the quotes
	if budget < n {
		return ""
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		w := jsonRuneLen(r, size)
		if n+w > budget {
			return s[:i]
		}
		n += w
		i += size
	}
	return s
}

// jsonStringLen is len(appendJSONString(nil, s)).
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n += jsonRuneLen(r, size)
		i += size
	}
	return n
}

// jsonRuneLen is the encoded length of one rune as appendJSONString
// writes it.
func jsonRuneLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1:
		return len(`\ufffd`)
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20:
		return len(`\u0000`)
	case r == '\u2028' || r == '\u2029':
		return len(`\u2028`)
	}
	return size
}

// AttachmentURL is the API path of an attachment.
func AttachmentURL(msgID, filename string) string {
	return "/v1/attachments/" + msgID + "/" + url.PathEscape(filename)
}
