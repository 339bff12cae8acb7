package mailparse

import (
	"bytes"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/inbucket/html2text"
	"github.com/jhillyerd/enmime/v2/mediatype"
	"golang.org/x/net/html/charset"
)

// message assembles the Message from the part tree.
func (p *parser) message(root *node) *Message {
	h := root.part.Header
	m := &Message{
		To:          []string{},
		Cc:          []string{},
		InReplyTo:   []string{},
		References:  []string{},
		Attachments: []Attachment{},
	}
	if from := p.addresses(h, "From"); len(from) > 0 {
		m.From = from[0]
	}
	m.To = p.addresses(h, "To")
	m.Cc = p.addresses(h, "Cc")
	m.Subject = decodeHeader(h.Get("Subject"))
	m.MessageID = firstID(h.Get("Message-Id"))
	m.InReplyTo = parseIDs(strings.Join(h.Values("In-Reply-To"), " "), false)
	m.References = parseIDs(strings.Join(h.Values("References"), " "), false)
	if d := strings.TrimSpace(h.Get("Date")); d != "" {
		t, err := parseDate(d)
		if err != nil {
			p.warn("message: unparseable Date %q", d)
		} else {
			m.Date = t
		}
	}

	texts, htmls := p.walk(root, m)
	m.Text = strings.Join(texts, "\n")
	m.HTML = strings.Join(htmls, "\n")
	if m.Text == "" && m.HTML != "" {
		m.Text = textFromHTML(m.HTML, p.warn)
	}

	p.collectPartErrors(root)
	if p.dropped > 0 {
		p.warnings = append(p.warnings, strconv.Itoa(p.dropped)+" more warnings left out")
	}
	m.PartsTruncated = p.partsCut || p.depthCut
	m.Warnings = p.warnings
	if m.Warnings == nil {
		m.Warnings = []string{}
	}
	return m
}

// textFromHTML derives the plain body of an HTML-only message.
func textFromHTML(h string, warn func(string, ...any)) string {
	html := h
	if len(html) > maxHTMLToTextBytes {
		html = cutUTF8(html, maxHTMLToTextBytes)
		warn("message: text derived from the first %d bytes of a %d-byte HTML body", len(html), len(h))
	}
	t, err := html2text.FromString(html)
	if err != nil {
		warn("message: cannot derive text from HTML: %v", err)
	}
	return validUTF8(t)
}

// walk collects the body texts and HTML bodies of n in document order, and appends the
// attachments to m. Of a multipart/alternative it keeps the first alternative that has text and
// the last that has HTML (alternatives are in increasing order of preference).
func (p *parser) walk(n *node, m *Message) (texts, htmls []string) {
	if n.multipart {
		alt := n.part.ContentType == "multipart/alternative"
		for _, c := range n.children {
			t, h := p.walk(c, m)
			switch {
			case !alt:
				texts, htmls = append(texts, t...), append(htmls, h...)
			default:
				if texts == nil && len(t) > 0 {
					texts = t
				}
				if len(h) > 0 {
					htmls = h
				}
			}
		}
		return texts, htmls
	}
	part := n.part
	ct := part.ContentType
	if strings.HasPrefix(ct, "multipart/") {
		p.warn("%s: %s without a boundary; body kept as text", n.label(), ct)
		ct = ""
	}
	if part.Disposition != "attachment" && part.FileName == "" {
		if n.deferred != nil && (ct == "text/plain" || ct == "" || ct == "text/html") {
			// A body: its text is needed now (only attachments are left encoded).
			part.Content, n.deferred = n.deferred.decode(), nil
		}
		switch ct {
		case "text/plain", "":
			if s := p.decodeBody(n); s != "" {
				return []string{s}, nil
			}
			return nil, nil
		case "text/html":
			if s := p.decodeBody(n); s != "" {
				return nil, []string{s}
			}
			return nil, nil
		}
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	name := p.names.unique(sanitizeFilename(part.FileName, ct))
	m.Attachments = append(m.Attachments, Attachment{
		Filename:    name,
		ContentType: ct,
		Data:        part.Content,
		Inline:      part.Disposition == "inline" || (part.Disposition == "" && part.ContentID != ""),
		deferred:    n.deferred,
	})
	return nil, nil
}

// decodeBody returns a body part's content as valid UTF-8 with LF line endings. enmime has
// converted declared charsets; content that is still not UTF-8 had no charset, US-ASCII, a
// charset enmime does not know, or a lying UTF-8 declaration.
func (p *parser) decodeBody(n *node) string {
	b := n.part.Content
	if !utf8.Valid(b) {
		declared := ""
		if _, params, _, err := mediatype.Parse(capMediaType(textproto.MIMEHeader(n.part.Header).Get("Content-Type"))); err == nil {
			declared = strings.ToLower(strings.TrimSpace(params["charset"]))
		}
		if declared == "utf-8" || declared == "utf8" {
			p.warn("%s: invalid UTF-8 replaced", n.label())
			b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
		} else {
			// The HTML5 rules: a BOM, a <meta> charset, else Windows-1252 (which maps every byte).
			enc, name, _ := charset.DetermineEncoding(b, n.part.ContentType)
			if dec, err := enc.NewDecoder().Bytes(b); err == nil {
				b = dec
			}
			p.warn("%s: text in undeclared or unknown charset %q read as %s", n.label(), declared, name)
			b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
		}
	}
	return crlfToLF(b)
}

// crlfToLF returns b as a string with CRLF line endings turned into LF. It takes b over: b was
// allocated for this part alone (by decodeLeaf, enmime or decodeBody), nothing reads or writes it
// afterwards, so it is rewritten in place and becomes the string's memory instead of being copied
// (a 20 MiB body would otherwise be held twice).
func crlfToLF(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	w := i
	for r := i; r < len(b); r++ {
		if b[r] == '\r' && r+1 < len(b) && b[r+1] == '\n' {
			continue
		}
		b[w] = b[r]
		w++
	}
	return unsafe.String(unsafe.SliceData(b), w)
}

// collectPartErrors turns enmime's per-part problems into Warnings, in document order.
func (p *parser) collectPartErrors(n *node) {
	if n.part != nil {
		for _, e := range n.part.Errors {
			p.warn("%s: %s: %s", n.label(), e.Name, e.Detail)
		}
	}
	for _, c := range n.children {
		p.collectPartErrors(c)
	}
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
