package store

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Hand-written JSON encoders for the two records every inbound message
// writes (the message record and the event payload): encoding/json's
// reflection was ~10% of ingest CPU. Output is what encoding/json produces
// with HTML escaping off (checked by TestJSONEncodersMatchEncodingJSON).

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, and
// U+2028/U+2029 escaped (as encoding/json does).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendJSONStringBody(dst, s)
	return append(dst, '"')
}

// appendJSONStringBody is appendJSONString without the quotes. Pieces of a
// string cut before a byte that starts a rune (utf8.RuneStart) encode, one
// after another, to the string's encoding: a valid sequence is never cut,
// and an invalid one is replaced byte by byte either way.
func appendJSONStringBody(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

func appendJSONStrings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}

// appendJSONTime appends t as encoding/json does (RFC 3339 with
// nanoseconds, trailing zeros dropped).
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendMessageJSON encodes m like encoding/json with Message's tags.
func appendMessageJSON(dst []byte, m *Message) []byte {
	return appendMessageJSONWith(dst, m, appendJSONString)
}

// appendMessageJSONWith is appendMessageJSON with the bodies (bodyText,
// bodyHtml) encoded by body, which appends a JSON string as
// appendJSONString does (messageChunker streams them into chunks).
func appendMessageJSONWith(dst []byte, m *Message, body func(dst []byte, s string) []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, m.ID)
	dst = append(dst, `,"inboxId":`...)
	dst = appendJSONString(dst, m.InboxID)
	dst = append(dst, `,"accountId":`...)
	dst = appendJSONString(dst, m.AccountID)
	dst = append(dst, `,"threadId":`...)
	dst = appendJSONString(dst, m.ThreadID)
	dst = append(dst, `,"rfcMessageId":`...)
	dst = appendJSONString(dst, m.RFCMessageID)
	dst = append(dst, `,"from":`...)
	dst = appendJSONString(dst, m.From)
	dst = append(dst, `,"to":`...)
	dst = appendJSONString(dst, m.To)
	dst = append(dst, `,"cc":`...)
	dst = appendJSONStrings(dst, m.Cc)
	dst = append(dst, `,"subject":`...)
	dst = appendJSONString(dst, m.Subject)
	dst = append(dst, `,"bodyText":`...)
	dst = body(dst, m.BodyText)
	if m.BodyHTML != "" {
		dst = append(dst, `,"bodyHtml":`...)
		dst = body(dst, m.BodyHTML)
	}
	dst = append(dst, `,"attachments":`...)
	if m.Attachments == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, a := range m.Attachments {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"filename":`...)
			dst = appendJSONString(dst, a.Filename)
			dst = append(dst, `,"contentType":`...)
			dst = appendJSONString(dst, a.ContentType)
			dst = append(dst, `,"sizeBytes":`...)
			dst = strconv.AppendInt(dst, int64(a.SizeBytes), 10)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"receivedAt":`...)
	dst = appendJSONTime(dst, m.ReceivedAt)
	dst = append(dst, `,"rawSize":`...)
	dst = strconv.AppendInt(dst, int64(m.RawSize), 10)
	if m.AttachmentsTruncated {
		dst = append(dst, `,"attachmentsTruncated":true`...)
	}
	return append(dst, '}')
}
