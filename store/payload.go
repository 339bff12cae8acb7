package store

import (
	"net/url"
	"strconv"
)

// EventMessageReceived is the event type of an inbound message.
const EventMessageReceived = "message.received"

// RenderMessageEvent encodes the message.received payload of message m
// around the per-attempt fields (see Event). The payload is not stored:
// it is rendered from the message record, which holds the same data. The
// field order is PROTOCOL.md §5's.
func RenderMessageEvent(evtID string, m *Message) (head, tail []byte) {
	received := AppendTime(make([]byte, 0, len(TimeLayout)), m.ReceivedAt)
	head = make([]byte, 0, 96+len(evtID))
	head = append(head, `{"event":"`+EventMessageReceived+`","event_id":`...)
	head = appendJSONString(head, evtID)
	head = append(head, `,"occurred_at":"`...)
	head = append(head, received...)
	head = append(head, '"')

	tail = make([]byte, 0, 384+len(m.BodyText)+len(m.Subject)+len(m.From))
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
	tail = appendJSONString(tail, m.BodyText)
	tail = append(tail, `,"attachments":[`...)
	for i, a := range m.Attachments {
		if i > 0 {
			tail = append(tail, ',')
		}
		tail = append(tail, `{"filename":`...)
		tail = appendJSONString(tail, a.Filename)
		tail = append(tail, `,"contentType":`...)
		tail = appendJSONString(tail, a.ContentType)
		tail = append(tail, `,"sizeBytes":`...)
		tail = strconv.AppendInt(tail, int64(a.SizeBytes), 10)
		tail = append(tail, `,"url":`...)
		tail = appendJSONString(tail, AttachmentURL(m.ID, a.Filename))
		tail = append(tail, '}')
	}
	tail = append(tail, `],"received_at":"`...)
	tail = append(tail, received...)
	tail = append(tail, `"}}`...)
	return head, tail
}

// AttachmentURL is the API path of an attachment.
func AttachmentURL(msgID, filename string) string {
	return "/v1/attachments/" + msgID + "/" + url.PathEscape(filename)
}
