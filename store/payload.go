package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
)

// EventMessageReceived is the event type of an inbound message.
const EventMessageReceived = "message.received"

// payloadMessage is the "message" object of the event payload
// (PROTOCOL.md §5), fields in the documented order.
type payloadMessage struct {
	ID           string              `json:"id"`
	RFCMessageID string              `json:"rfc_message_id"`
	From         string              `json:"from"`
	To           string              `json:"to"`
	Cc           []string            `json:"cc"`
	Subject      string              `json:"subject"`
	BodyText     string              `json:"body_text"`
	Attachments  []payloadAttachment `json:"attachments"`
	ReceivedAt   string              `json:"received_at"`
}

type payloadAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	SizeBytes   int    `json:"sizeBytes"`
	URL         string `json:"url"`
}

// RenderMessageEvent encodes the message.received payload of message m
// around the per-attempt fields (see Event). The payload is not stored:
// it is rendered from the message record, which holds the same data.
func RenderMessageEvent(evtID string, m *Message) (head, tail []byte) {
	head = fmt.Appendf(make([]byte, 0, 128), `{"event":%s,"event_id":%s,"occurred_at":"%s"`,
		jsonText(EventMessageReceived), jsonText(evtID), AppendTime(nil, m.ReceivedAt))
	pm := payloadMessage{
		ID: m.ID, RFCMessageID: m.RFCMessageID, From: m.From, To: m.To, Cc: m.Cc,
		Subject: m.Subject, BodyText: m.BodyText, ReceivedAt: string(AppendTime(nil, m.ReceivedAt)),
		Attachments: make([]payloadAttachment, 0, len(m.Attachments)),
	}
	if pm.Cc == nil {
		pm.Cc = []string{}
	}
	for _, a := range m.Attachments {
		pm.Attachments = append(pm.Attachments, payloadAttachment{
			Filename: a.Filename, ContentType: a.ContentType, SizeBytes: a.SizeBytes,
			URL: AttachmentURL(m.ID, a.Filename),
		})
	}
	tail = fmt.Appendf(make([]byte, 0, 256+len(m.BodyText)), `,"inbox_id":%s,"thread_id":%s,"message":%s}`,
		jsonText(m.InboxID), jsonText(m.ThreadID), jsonText(pm))
	return head, tail
}

// AttachmentURL is the API path of an attachment.
func AttachmentURL(msgID, filename string) string {
	return "/v1/attachments/" + msgID + "/" + url.PathEscape(filename)
}

// jsonText encodes v without HTML escaping (payloads carry mail text such
// as "Name <addr>", which should read as written).
func jsonText(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("BUG: cannot encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
