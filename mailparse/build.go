package mailparse

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidCompose wraps every error Build returns: a field of the Compose is invalid.
var ErrInvalidCompose = errors.New("mailparse: invalid message")

// Compose is a message in the JSON inbound form (API.md, "Inbound mail").
type Compose struct {
	From string   // required: one address, `Name <addr@x>` or `addr@x`
	To   string   // optional: an address list (the receiving inbox's address)
	Cc   []string // optional: each an address or address list
	// Subject, Text and HTML are UTF-8 (invalid bytes become U+FFFD). Line breaks in Text and
	// HTML may be LF, CRLF or CR; the message uses CRLF.
	Subject, Text, HTML string
	// MessageID and InReplyTo are message ids, with or without angle brackets. An empty
	// MessageID gets NewMessageID(the From domain).
	MessageID, InReplyTo string
	Date                 time.Time // zero means now
	// Attachments: Data is the decoded content; Filename is sanitized and made unique as Parse
	// would; an empty ContentType means application/octet-stream.
	Attachments []Attachment
}

// Build returns c as an RFC 5322 message with CRLF line endings: Date, From, To, Cc, Subject
// (encoded words when needed), Message-ID, In-Reply-To and References (the same id), and
// MIME-Version. The body is text/plain or text/html, multipart/alternative when both are set,
// wrapped in multipart/mixed with base64 attachments. Text is sent as 7bit when it is short-lined
// ASCII, else as quoted-printable, or base64 when mostly non-ASCII.
//
// Parse(Build(c)) gives back From, To, Cc and Subject (normalised as Parse formats them), Text
// and HTML (with LF line endings), MessageID, InReplyTo and the attachments.
func Build(c Compose) ([]byte, error) {
	raw, _, err := build(c, false)
	return raw, err
}

// BuildMessage is Build that also returns the Message that Parse would
// make of the bytes, without parsing them (the JSON inbound path stores
// both). A test checks it against Parse for every round-trip case.
func BuildMessage(c Compose) ([]byte, *Message, error) {
	return build(c, true)
}

func build(c Compose, wantMessage bool) ([]byte, *Message, error) {
	raw, m, err := buildRaw(c, wantMessage)
	if err != nil {
		return nil, nil, err
	}
	return raw, m, nil
}

func buildRaw(c Compose, wantMessage bool) ([]byte, *Message, error) {
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: from %q: %v", ErrInvalidCompose, c.From, err)
	}
	var to []*mail.Address
	if strings.TrimSpace(c.To) != "" {
		if to, err = mail.ParseAddressList(c.To); err != nil {
			return nil, nil, fmt.Errorf("%w: to %q: %v", ErrInvalidCompose, c.To, err)
		}
	}
	var cc []*mail.Address
	for _, s := range c.Cc {
		list, err := mail.ParseAddressList(s)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: cc %q: %v", ErrInvalidCompose, s, err)
		}
		cc = append(cc, list...)
	}
	msgID, err := normaliseID(c.MessageID)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: message id: %v", ErrInvalidCompose, err)
	}
	if msgID == "" {
		msgID = NewMessageID(from.Address[strings.LastIndexByte(from.Address, '@')+1:])
	}
	inReplyTo, err := normaliseID(c.InReplyTo)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: in-reply-to: %v", ErrInvalidCompose, err)
	}
	atts, err := buildAttachments(c.Attachments)
	if err != nil {
		return nil, nil, err
	}
	date := c.Date
	if date.IsZero() {
		date = time.Now()
	}

	size := 1024 + len(c.Subject)*2 + len(c.Text)*3/2 + len(c.HTML)*3/2
	for _, a := range atts {
		size += len(a.Data)*4/3 + len(a.Data)/38 + 512
	}
	var buf bytes.Buffer
	buf.Grow(size)
	writeHeader(&buf, "Date", date.Format(time.RFC1123Z))
	writeHeader(&buf, "From", from.String())
	if len(to) > 0 {
		writeHeader(&buf, "To", joinAddresses(to))
	}
	if len(cc) > 0 {
		writeHeader(&buf, "Cc", joinAddresses(cc))
	}
	writeHeader(&buf, "Subject", encodeSubject(validUTF8(c.Subject)))
	writeHeader(&buf, "Message-ID", msgID)
	if inReplyTo != "" {
		writeHeader(&buf, "In-Reply-To", inReplyTo)
		writeHeader(&buf, "References", inReplyTo)
	}
	writeHeader(&buf, "MIME-Version", "1.0")

	text, html := validUTF8(c.Text), validUTF8(c.HTML)
	var body []bodyPart
	switch {
	case text != "" && html != "":
		body = []bodyPart{textBody("text/plain", text), textBody("text/html", html)}
	case html != "":
		body = []bodyPart{textBody("text/html", html)}
	default:
		body = []bodyPart{textBody("text/plain", text)}
	}
	var m *Message
	if wantMessage {
		m = composedMessage(from, to, cc, c.Subject, text, html, msgID, inReplyTo, date, atts)
	}
	if len(atts) == 0 {
		if len(body) == 1 {
			body[0].writeTo(&buf)
		} else {
			writeMultipart(&buf, "multipart/alternative", body)
		}
		return buf.Bytes(), m, nil
	}
	parts := make([]bodyPart, 0, 1+len(atts))
	if len(body) == 1 {
		parts = append(parts, body[0])
	} else {
		parts = append(parts, bodyPart{multipart: "multipart/alternative", children: body})
	}
	for _, a := range atts {
		parts = append(parts, attachmentBody(a))
	}
	writeMultipart(&buf, "multipart/mixed", parts)
	return buf.Bytes(), m, nil
}

// composedMessage is what Parse returns for the message buildRaw writes.
func composedMessage(from *mail.Address, to, cc []*mail.Address, subject, text, html, msgID, inReplyTo string, date time.Time, atts []Attachment) *Message {
	m := &Message{
		From: displayAddress(from), To: make([]string, 0, len(to)), Cc: make([]string, 0, len(cc)),
		Subject: validUTF8(subject), Text: lfText(text), HTML: lfText(html), MessageID: msgID,
		InReplyTo: []string{}, References: []string{}, Date: date.Truncate(time.Second),
		Attachments: atts, Warnings: []string{},
	}
	for _, a := range to {
		m.To = append(m.To, displayAddress(a))
	}
	for _, a := range cc {
		m.Cc = append(m.Cc, displayAddress(a))
	}
	if inReplyTo != "" {
		m.InReplyTo, m.References = []string{inReplyTo}, []string{inReplyTo}
	}
	for i := range m.Attachments {
		if m.Attachments[i].Data == nil {
			m.Attachments[i].Data = []byte{}
		}
	}
	if m.Text == "" && m.HTML != "" {
		m.Text = textFromHTML(m.HTML, func(string, ...any) {})
	}
	return m
}

// lfText normalises line breaks to LF, as Parse returns bodies.
func lfText(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// NewMessageID returns a random message id `<...@domain>`. A domain that is not a plain
// host name is replaced by "mailwire.invalid".
func NewMessageID(domain string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "<" + idEncoding.EncodeToString(b[:]) + "@" + idDomain(domain) + ">"
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func idDomain(d string) string {
	d = strings.ToLower(strings.TrimSpace(d))
	if d == "" || len(d) > 253 {
		return "mailwire.invalid"
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return "mailwire.invalid"
		}
	}
	return d
}

// normaliseID returns id in angle brackets, or "" for an empty id. An id may not contain
// blanks, control characters or further angle brackets.
func normaliseID(id string) (string, error) {
	id = strings.TrimSpace(id)
	if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") {
		id = id[1 : len(id)-1]
	}
	if id == "" {
		return "", nil
	}
	if len(id) > 900 {
		return "", fmt.Errorf("longer than 900 bytes")
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == utf8.RuneError {
			return "", fmt.Errorf("%q contains %q", id, r)
		}
	}
	return "<" + id + ">", nil
}

func buildAttachments(in []Attachment) ([]Attachment, error) {
	var names nameSet
	out := make([]Attachment, 0, len(in))
	for _, a := range in {
		ct := "application/octet-stream"
		if strings.TrimSpace(a.ContentType) != "" {
			mt, _, err := mime.ParseMediaType(a.ContentType)
			if err != nil || strings.HasPrefix(mt, "multipart/") || !strings.Contains(mt, "/") {
				return nil, fmt.Errorf("%w: attachment %q: content type %q", ErrInvalidCompose, a.Filename, a.ContentType)
			}
			ct = mt
		}
		a.ContentType = ct
		a.Filename = names.unique(sanitizeFilename(a.Filename, ct))
		out = append(out, a)
	}
	return out, nil
}

// bodyPart is a MIME part to write: a leaf with its headers and encoded content, or a
// multipart with children.
type bodyPart struct {
	header    textproto.MIMEHeader
	content   []byte
	multipart string
	children  []bodyPart
}

func (b bodyPart) writeTo(w *bytes.Buffer) {
	if b.multipart != "" {
		writeMultipart(w, b.multipart, b.children)
		return
	}
	for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Transfer-Encoding"} {
		if v := b.header.Get(k); v != "" {
			writeHeader(w, k, v)
		}
	}
	w.WriteString("\r\n")
	w.Write(b.content)
}

// writeMultipart writes the Content-Type header of a multipart, the blank line and the parts.
func writeMultipart(w *bytes.Buffer, ctype string, parts []bodyPart) {
	mw := multipart.NewWriter(w)
	writeHeader(w, "Content-Type", mime.FormatMediaType(ctype, map[string]string{"boundary": mw.Boundary()}))
	w.WriteString("\r\n")
	for _, p := range parts {
		if p.multipart != "" {
			inner := multipart.NewWriter(io.Discard)
			h := textproto.MIMEHeader{}
			h.Set("Content-Type", mime.FormatMediaType(p.multipart, map[string]string{"boundary": inner.Boundary()}))
			pw, _ := mw.CreatePart(h) // writes to a bytes.Buffer: cannot fail
			writeParts(pw, inner.Boundary(), p.children)
			continue
		}
		pw, _ := mw.CreatePart(p.header)
		_, _ = pw.Write(p.content)
	}
	_ = mw.Close()
}

// writeParts writes the parts of a nested multipart whose header is already written.
func writeParts(w io.Writer, boundary string, parts []bodyPart) {
	mw := multipart.NewWriter(w)
	_ = mw.SetBoundary(boundary)
	for _, p := range parts {
		pw, _ := mw.CreatePart(p.header)
		_, _ = pw.Write(p.content)
	}
	_ = mw.Close()
}

// textBody encodes a text body in UTF-8 with CRLF line breaks.
func textBody(ctype, s string) bodyPart {
	b := toCRLF(s)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", ctype+"; charset=utf-8")
	var content []byte
	switch ascii, shortLines := textShape(b); {
	case ascii == len(b) && shortLines:
		h.Set("Content-Transfer-Encoding", "7bit")
		content = b
	case (len(b)-ascii)*5 > len(b):
		h.Set("Content-Transfer-Encoding", "base64")
		content = base64Lines(b)
	default:
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		var qp bytes.Buffer
		qp.Grow(len(b) + len(b)/8)
		w := quotedprintable.NewWriter(&qp)
		_, _ = w.Write(b)
		_ = w.Close()
		content = qp.Bytes()
	}
	return bodyPart{header: h, content: content}
}

func attachmentBody(a Attachment) bodyPart {
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", mime.FormatMediaType(a.ContentType, map[string]string{"name": a.Filename}))
	disp := "attachment"
	if a.Inline {
		disp = "inline"
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": a.Filename}))
	h.Set("Content-Transfer-Encoding", "base64")
	return bodyPart{header: h, content: base64Lines(a.Data)}
}

// textShape counts the bytes of b that may appear in 7bit text (printable ASCII, tab, CRLF)
// and reports whether every line is at most 78 bytes.
func textShape(b []byte) (ascii int, shortLines bool) {
	shortLines = true
	line := 0
	for _, c := range b {
		switch {
		case c == '\n':
			line = 0
			ascii++
			continue
		case c == '\t' || c == '\r' || (c >= ' ' && c < 0x7f):
			ascii++
		}
		if line++; line > 78+1 { // +1: the CR of CRLF
			shortLines = false
		}
	}
	return ascii, shortLines
}

// toCRLF converts LF, CR and CRLF line breaks to CRLF.
func toCRLF(s string) []byte {
	out := make([]byte, 0, len(s)+len(s)/32)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// base64Lines encodes b in base64 lines of 76 characters, each ended by CRLF.
func base64Lines(b []byte) []byte {
	enc := base64.StdEncoding
	n := enc.EncodedLen(len(b))
	out := make([]byte, 0, n+n/76*2+2)
	const chunk = 57 // 76 encoded characters
	var line [76]byte
	for len(b) > 0 {
		k := min(chunk, len(b))
		enc.Encode(line[:], b[:k])
		out = append(out, line[:enc.EncodedLen(k)]...)
		out = append(out, '\r', '\n')
		b = b[k:]
	}
	return out
}

func joinAddresses(list []*mail.Address) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// encodeSubject returns s as it may appear in a header: unchanged when it is printable ASCII
// that a reader gives back exactly, else as RFC 2047 encoded words (Q when mostly ASCII).
func encodeSubject(s string) string {
	if plainHeaderText(s) {
		return s
	}
	nonASCII := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			nonASCII++
		}
	}
	enc := mime.QEncoding
	if nonASCII*5 > len(s) {
		enc = mime.BEncoding
	}
	if e := enc.Encode("utf-8", s); e != s {
		return e
	}
	// Printable ASCII that still needs encoding ("=?" inside, blanks at the ends, a very long
	// word): mime.WordEncoder leaves it alone, so write the B words here.
	var words []string
	for len(s) > 0 {
		k := cutUTF8(s, 45)
		if k == "" {
			k = s[:1]
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(k))+"?=")
		s = s[len(k):]
	}
	return strings.Join(words, " ")
}

// plainHeaderText reports whether s survives a header write and read unchanged: printable
// ASCII, no encoded-word opener, no blanks at the ends, and no word too long to fold.
func plainHeaderText(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "=?") {
		return false
	}
	word := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f {
			return false
		}
		if c == ' ' {
			word = 0
		} else if word++; word > 900 {
			return false
		}
	}
	return true
}

// writeHeader writes "Name: value" CRLF, folding at single spaces so that lines stay within 78
// bytes where the value allows. Folding only at a single space between two words keeps the
// value intact through unfolding, which turns "CRLF SP" back into one space.
func writeHeader(w *bytes.Buffer, name, value string) {
	w.WriteString(name)
	w.WriteString(":")
	if value == "" {
		w.WriteString("\r\n")
		return
	}
	line := len(name) + 1
	prevEmpty := true
	for i, word := range strings.Split(value, " ") {
		switch {
		case i == 0:
			w.WriteByte(' ')
			line++
		case line+1+len(word) > 78 && !prevEmpty && word != "":
			w.WriteString("\r\n ")
			line = 1
		default:
			w.WriteByte(' ')
			line++
		}
		w.WriteString(word)
		line += len(word)
		prevEmpty = word == ""
	}
	w.WriteString("\r\n")
}
