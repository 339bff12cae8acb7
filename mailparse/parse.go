package mailparse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/mediatype"
)

// Errors returned by Parse.
var (
	// ErrNotMessage: the input is empty or does not start with a header section.
	ErrNotMessage = errors.New("mailparse: not a mail message")
	// ErrHeaderTooLarge: the header section is larger than Limits.MaxHeaderBytes.
	ErrHeaderTooLarge = errors.New("mailparse: header section too large")
)

// Attachment is a MIME part that is not part of the message body.
type Attachment struct {
	// Filename is safe to use as one path segment (no '/', '\', control characters or leading
	// dots, at most 200 bytes) and unique within the message. It is not URL-escaped.
	Filename string
	// ContentType is the media type without parameters, lower case, e.g. "application/pdf".
	ContentType string
	// Data is the decoded content. Text types are converted to UTF-8 (their ContentType carries
	// no charset).
	Data []byte
	// Inline is set for parts with Content-Disposition inline, or none and a Content-ID (images
	// referenced from the HTML body).
	Inline bool

	// deferred, when set, is the content ParseDeferred left encoded (Data is nil).
	deferred *deferredContent
}

// Message is a parsed mail message. All strings are valid UTF-8; slices are never nil.
type Message struct {
	From       string   // `Name <addr@x>` or `addr@x`
	To, Cc     []string // one display string per address
	Subject    string   // encoded words decoded
	Text       string   // plain body, LF line endings; derived from HTML when there is no plain part
	HTML       string   // HTML body, LF line endings; "" when none
	MessageID  string   // with angle brackets, e.g. "<abc@host>"; "" when absent or empty
	InReplyTo  []string // message ids with angle brackets
	References []string // message ids with angle brackets, in header order
	Date       time.Time
	// Attachments in document order: every part with a filename or Content-Disposition
	// attachment, and every other part that is not a text/plain or text/html body.
	Attachments []Attachment
	// Warnings lists problems that were tolerated (malformed MIME, limits hit, bad charsets...).
	Warnings []string
	// PartsTruncated is set when MIME parts were left out because of Limits.MaxParts or
	// Limits.MaxDepth: Attachments (or the bodies) may then be incomplete, while the raw message
	// still holds everything. It is reported whether or not its Warning fit in Warnings.
	PartsTruncated bool
}

// enmimeParser is immutable configuration shared by all Parse calls; enmime copies it per call.
var enmimeParser = enmime.NewParser(
	// chardet runs on every text part otherwise (about 100 µs each); declared charsets are
	// trusted, and parseMediaType declares one for every text part.
	enmime.DisableCharacterDetection(true),
	// A multipart without a boundary is read as a single part instead of failing.
	enmime.MultipartWOBoundaryAsSinglePart(true),
	enmime.SetCustomParseMediaType(parseMediaType),
	// Keep what decoded before a base64 error instead of dropping the whole part.
	enmime.SetReadPartErrorPolicy(func(_ *enmime.Part, err error) bool {
		return enmime.IsBase64CorruptInputError(err)
	}),
	enmime.MaxStoredPartErrors(maxPartErrors),
)

// parseMediaType is enmime's lenient media-type parser with two changes: the value is capped
// (see maxMediaTypeBytes), and a text type without a charset, or declaring US-ASCII, is read as
// UTF-8. enmime maps US-ASCII to Windows-1252, which garbles the undeclared UTF-8 that many
// senders emit; bodies that are not valid UTF-8 get a second look in decodeBody.
func parseMediaType(v string) (string, map[string]string, []string, error) {
	mt, params, invalid, err := mediatype.Parse(capMediaType(v))
	if err == nil && strings.HasPrefix(mt, "text/") && params != nil {
		if isASCIILabel(params["charset"]) {
			params["charset"] = "utf-8"
		}
	}
	return mt, params, invalid, err
}

func isASCIILabel(cs string) bool {
	switch strings.ToLower(strings.TrimSpace(cs)) {
	case "", "us-ascii", "ascii", "us", "ansi_x3.4-1968", "iso646-us", "csascii":
		return true
	}
	return false
}

// capMediaType cuts v to maxMediaTypeBytes and maxMediaTypeParams parameters.
func capMediaType(v string) string {
	if len(v) > maxMediaTypeBytes {
		v = v[:maxMediaTypeBytes]
	}
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] == ';' {
			n++
			if n > maxMediaTypeParams {
				return v[:i]
			}
		}
	}
	return v
}

// node is one MIME part of the tree Parse builds. part holds what enmime decoded: for a leaf its
// headers and content, for a multipart only its headers.
type node struct {
	id        string // "" for the message, then "1", "1.2"...
	part      *enmime.Part
	children  []*node
	multipart bool
	// deferred, when set, is the leaf's content left encoded (part.Content is nil).
	deferred *deferredContent
}

func (n *node) label() string {
	if n.id == "" {
		return "message"
	}
	return "part " + n.id
}

// parser holds the state of one Parse call.
type parser struct {
	lim      Limits
	parts    int // parts read so far, against lim.MaxParts
	partsCut bool
	depthCut bool
	warnings []string
	dropped  int // warnings beyond maxWarnings
	names    nameSet
	lazy     bool // ParseDeferred: large contents may be left encoded
}

func (p *parser) warn(format string, args ...any) {
	if len(p.warnings) >= maxWarnings {
		p.dropped++
		return
	}
	p.warnings = append(p.warnings, validUTF8(fmt.Sprintf(format, args...)))
}

// Parse parses a raw RFC 5322 message. See the package doc for what makes it fail; every other
// problem becomes a Warning.
func Parse(raw []byte, lim Limits) (*Message, error) {
	return parse(raw, lim, false)
}

// parse is Parse, or ParseDeferred when lazy is set.
func parse(raw []byte, lim Limits, lazy bool) (*Message, error) {
	p := &parser{lim: lim.withDefaults(), lazy: lazy}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrNotMessage)
	}
	if !isHeaderStart(raw) {
		return nil, fmt.Errorf("%w: no header section", ErrNotMessage)
	}
	if hdrLen, _ := splitHeader(raw); hdrLen > p.lim.MaxHeaderBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrHeaderTooLarge, hdrLen, p.lim.MaxHeaderBytes)
	}
	root := p.parsePart(raw, "", 0)
	m := p.message(root)
	return m, nil
}

// parsePart parses one part (or the whole message when id == ""), descending into multiparts.
// It returns nil when the part is dropped.
func (p *parser) parsePart(data []byte, id string, depth int) *node {
	n := &node{id: id}
	hdrLen, bodyStart := splitHeader(data)
	if id != "" && hdrLen > p.lim.MaxHeaderBytes {
		p.warn("part %s: header block of %d bytes exceeds %d; part kept as text", id, hdrLen, p.lim.MaxHeaderBytes)
		n.part = textPart(nil, data)
		return n
	}
	header := data[:hdrLen]
	if !containsFold(header, "boundary") {
		// Cannot be a multipart: no boundary parameter.
		return p.readLeaf(n, data, hdrLen, bodyStart)
	}
	// Read the header block alone to see whether this is a multipart.
	hp, err := readParts(enmimeParser, data[:bodyStart])
	if err != nil || !strings.HasPrefix(hp.ContentType, "multipart/") || hp.Boundary == "" {
		return p.readLeaf(n, data, hdrLen, bodyStart)
	}
	n.part = hp
	if depth >= p.lim.MaxDepth {
		if !p.depthCut {
			p.depthCut = true
			p.warn("%s: multipart nested deeper than %d levels dropped", n.label(), p.lim.MaxDepth)
		}
		return nil
	}
	n.multipart = true
	s := newMultipartSplitter(data[bodyStart:], hp.Boundary)
	for i := 1; ; i++ {
		child, ok := s.next()
		if !ok {
			break
		}
		if p.parts >= p.lim.MaxParts {
			if !p.partsCut {
				p.partsCut = true
				p.warn("%s: more than %d MIME parts; the rest were dropped", n.label(), p.lim.MaxParts)
			}
			break
		}
		p.parts++
		cid := strconv.Itoa(i)
		if id != "" {
			cid = id + "." + cid
		}
		if c := p.parsePart(child, cid, depth+1); c != nil {
			n.children = append(n.children, c)
		}
	}
	switch {
	case !s.sawDelimiter():
		// Salvage: the declared boundary never appears, so keep the body as text.
		p.warn("%s: boundary %q never appears; body kept as text", n.label(), hp.Boundary)
		n.multipart = false
		n.part = textPart(hp.Header, data[bodyStart:])
	case !s.closed && !p.partsCut:
		p.warn("%s: closing boundary %q missing", n.label(), hp.Boundary)
	}
	return n
}

// readLeaf decodes a single part with enmime. enmime cannot descend into it: parsePart has
// established that it is not a multipart with a boundary, using the same media-type parser.
func (p *parser) readLeaf(n *node, data []byte, hdrLen, bodyStart int) *node {
	data = p.cleanBase64(n, data, hdrLen, bodyStart)
	if part, d, ok := decodeLeafDeferred(data, bodyStart, p.lazy); ok {
		n.part, n.deferred = part, d
		return n
	}
	part, err := readParts(enmimeParser, data)
	if err != nil {
		p.warn("%s: %v; kept as text", n.label(), err)
		var h map[string][]string
		body := data
		if n.id == "" {
			// Keep the headers that can be read, for From, Subject...
			h, _ = enmime.ReadHeader(bufio.NewReader(bytes.NewReader(data[:bodyStart])), discardErrors{})
			body = data[bodyStart:]
		}
		n.part = textPart(h, body)
		return n
	}
	n.part = part
	return n
}

// readerPool recycles the 4 KiB bufio.Reader that enmime.ReadParts would allocate per part
// (it reuses a *bufio.Reader with a large enough buffer). The parsed Part keeps no reference
// to it: contents are copied out with io.ReadAll.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func readParts(parser *enmime.Parser, data []byte) (*enmime.Part, error) {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(data))
	part, err := parser.ReadParts(br)
	br.Reset(nil)
	readerPool.Put(br)
	return part, err
}

// cleanBase64 removes the characters that are not base64 from a base64 body before enmime sees
// it: enmime allocates an error (about 180 bytes) per invalid character. The result is what
// enmime's own cleaner would decode, reported as one Warning.
func (p *parser) cleanBase64(n *node, data []byte, hdrLen, bodyStart int) []byte {
	if !containsFold(data[:hdrLen], "base64") {
		return data
	}
	body := data[bodyStart:]
	bad := 0
	for _, c := range body {
		if base64Class[c] == b64Invalid {
			bad++
		}
	}
	if bad == 0 {
		return data
	}
	h, _ := enmime.ReadHeader(bufio.NewReader(bytes.NewReader(data[:bodyStart])), discardErrors{})
	if !strings.EqualFold(strings.TrimSpace(h.Get("Content-Transfer-Encoding")), "base64") {
		return data
	}
	out := make([]byte, 0, len(data)-bad)
	out = append(out, data[:bodyStart]...)
	for _, c := range body {
		if base64Class[c] != b64Invalid {
			out = append(out, c)
		}
	}
	p.warn("%s: %d invalid characters in base64 content skipped", n.label(), bad)
	return out
}

const (
	b64Invalid = iota
	b64Valid
)

// base64Class marks the bytes that may appear in a base64 body: the alphabet, '=' and blanks.
var base64Class = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n") {
		t[c] = b64Valid
	}
	return t
}()

// textPart makes a text/plain leaf of raw bytes that could not be parsed as MIME.
func textPart(h map[string][]string, body []byte) *enmime.Part {
	part := enmime.NewPart("text/plain")
	if h != nil {
		part.Header = h
	}
	part.Content = bytes.Clone(body)
	return part
}

// discardErrors is an enmime.ErrorCollector for header re-reads whose problems were already
// reported (or are reported otherwise).
type discardErrors struct{}

func (discardErrors) AddError(string, string, ...any)   {}
func (discardErrors) AddWarning(string, string, ...any) {}
