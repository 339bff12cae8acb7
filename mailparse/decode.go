package mailparse

import (
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
	"golang.org/x/net/html/charset"
	"golang.org/x/text/encoding"
	"golang.org/x/text/transform"
)

// Content decoding without enmime's content pipeline.
//
// enmime reads a part's content with io.ReadAll once per decoding stage (transfer encoding, then
// charset for text), and io.ReadAll holds its chunks and its exactly sized result at once: a
// quoted-printable text cost about 5 times its size in allocations and a base64 attachment 2
// times, plus 4-25 KiB of reader buffers per part. decodeLeaf gets the same bytes with one
// allocation of the decoded size per stage: enmime reads only the header block (headerParser
// decodes no content), and this file decodes the body the way enmime does (base64 and
// quoted-printable with enmime's cleaning, the charsets of enmime's table that the WHATWG index
// maps alike). For what it does not cover (unknown transfer encodings, a base64 body with a
// dangling character, charsets such as UTF-7 or unknown ones) decodeLeaf declines and enmime
// decodes the part as before, so the result never differs from enmime's:
// TestDecodeLeafMatchesEnmime and FuzzDecodeLeaf check this.

// headerParser is enmimeParser that reads no content: it is used on header blocks alone, where
// it sets up the part's fields and header problems exactly as enmimeParser does (RawContent only
// turns off content decoding, and with it the decoders' buffers).
var headerParser = enmime.NewParser(
	enmime.DisableCharacterDetection(true),
	enmime.MultipartWOBoundaryAsSinglePart(true),
	enmime.SetCustomParseMediaType(parseMediaType),
	enmime.SetReadPartErrorPolicy(func(_ *enmime.Part, err error) bool {
		return enmime.IsBase64CorruptInputError(err)
	}),
	enmime.MaxStoredPartErrors(maxPartErrors),
	enmime.RawContent(true),
)

// decodeLeaf returns the part of a leaf's bytes (header block up to bodyStart, then the body)
// with its content decoded, or ok == false when enmime must decode it. The content is a fresh
// allocation: it shares no memory with data.
func decodeLeaf(data []byte, bodyStart int) (part *enmime.Part, ok bool) {
	part, _, ok = decodeLeafDeferred(data, bodyStart, false)
	return part, ok
}

// decodeLeafDeferred is decodeLeaf that, when lazy is set, may leave a large body encoded: it then
// returns the part without Content and what decodes it (see deferredContent), and the caller
// decodes it when it needs the bytes. Only bodies that cannot fail to decode are left: base64 of
// the alphabet and line breaks alone, and content kept as it is.
func decodeLeafDeferred(data []byte, bodyStart int, lazy bool) (part *enmime.Part, d *deferredContent, ok bool) {
	part, err := readParts(headerParser, data[:bodyStart])
	if err != nil || part.FirstChild != nil || strings.HasPrefix(part.ContentType, "multipart/") && part.Boundary != "" {
		// enmime fails, or would read a multipart (parsePart has ruled that out).
		return nil, nil, false
	}
	var conv converter // nil: the content is kept as decoded
	if strings.HasPrefix(part.ContentType, "text/") {
		if conv, ok = charsetConverter(part.Charset); !ok {
			return nil, nil, false
		}
	}
	body := data[bodyStart:]
	var content []byte
	// The same lookup enmime makes (the internal copy of net/textproto it uses behaves alike).
	switch cte := strings.ToLower(textproto.MIMEHeader(part.Header).Get("Content-Transfer-Encoding")); cte {
	case "base64":
		if lazy && conv == nil && len(body) >= deferFromBytes {
			if d := deferBase64(body); d != nil {
				part.Content = nil
				return part, d, true
			}
		}
		content, ok = decodeBase64(body)
	case "quoted-printable":
		content, ok = decodeQuotedPrintable(body)
	case "7bit", "8bit", "binary", "":
		if lazy && conv == nil && len(body) >= deferFromBytes {
			part.Content = nil
			return part, &deferredContent{src: body, size: len(body)}, true
		}
		content, ok = body, true
		if conv == nil {
			content = append([]byte{}, body...)
		}
	default:
		// enmime warns about the unknown encoding; let it.
		return nil, nil, false
	}
	if ok && conv != nil {
		content, ok = conv.convert(content)
	}
	if !ok {
		return nil, nil, false
	}
	part.Content = content
	return part, nil, true
}

// converter converts text to UTF-8 into a new buffer of exactly the result's size.
type converter interface {
	convert(b []byte) ([]byte, bool)
}

// charsetConverter returns the converter enmime would use for text in charset cs: nil for UTF-8
// (which enmime passes through), ok == false when decodeLeaf leaves the part to enmime (an
// unknown charset, which enmime warns about, or one of the few labels enmime maps otherwise
// than the WHATWG index; enmime's table is based on it).
func charsetConverter(cs string) (c converter, ok bool) {
	l := strings.ToLower(cs)
	if isUTF8Label(l) {
		return nil, true
	}
	if bc := byteCharsets[l]; bc != nil {
		return bc, true
	}
	if l != strings.TrimSpace(l) || notEnmimeLabels[l] {
		return nil, false
	}
	enc, _ := charset.Lookup(l)
	if enc == nil {
		return nil, false
	}
	return decoderConverter{enc}, true
}

// isUTF8Label reports whether enmime reads text labelled l (lower case) unchanged.
func isUTF8Label(l string) bool {
	switch l {
	case "utf-8", "utf8", "unicode-1-1-utf-8", "utf8mb4":
		return true
	}
	return false
}

// notEnmimeLabels are the labels of the WHATWG index that enmime does not know (it warns and
// passes the text through) or maps to another charset. The ISO-8859-1 labels, which enmime maps
// to ISO-8859-1 proper rather than windows-1252, are in byteCharsets.
var notEnmimeLabels = map[string]bool{
	"unicode11utf8": true, "unicode20utf8": true, "x-unicode20utf8": true, "koi8-ru": true,
	"ms932": true, "replacement": true, "unicodefffe": true, "csunicode": true,
	"iso-10646-ucs-2": true, "ucs-2": true, "unicode": true, "unicodefeff": true,
	"hz-gb-2312": true,
}

// decoderConverter converts with an x/text decoder, in two passes: one to size the result.
type decoderConverter struct{ enc encoding.Encoding }

func (c decoderConverter) convert(b []byte) ([]byte, bool) {
	dec := c.enc.NewDecoder()
	var scratch [4096]byte
	n := 0
	for src := b; ; {
		nDst, nSrc, err := dec.Transform(scratch[:], src, true)
		n += nDst
		src = src[nSrc:]
		if err == nil {
			break
		}
		if err != transform.ErrShortDst || nDst+nSrc == 0 {
			return nil, false
		}
	}
	out := make([]byte, n)
	dec.Reset()
	nDst, nSrc, err := dec.Transform(out, b, true)
	return out, err == nil && nDst == n && nSrc == len(b)
}

// byteCharset is a single-byte charset: the rune of each byte and the length of its UTF-8.
type byteCharset struct {
	runes [256]rune
	lens  [256]uint8
}

func (c *byteCharset) convert(b []byte) ([]byte, bool) {
	n := 0
	for _, x := range b {
		n += int(c.lens[x])
	}
	out := make([]byte, 0, n)
	for _, x := range b {
		if c.lens[x] == 1 {
			out = append(out, byte(c.runes[x]))
		} else {
			out = utf8.AppendRune(out, c.runes[x])
		}
	}
	return out, true
}

// byteCharsets maps the labels of enmime's charset table (lower case) that name a single-byte
// charset in common use to that charset, as enmime maps them: some labels that the WHATWG maps
// to windows-1252 are ISO-8859-1 proper in enmime, and ISO-8859-9 is windows-1254.
// TestDecodeLeafMatchesEnmime converts every byte in every label both ways.
var byteCharsets = func() map[string]*byteCharset {
	latin1 := &byteCharset{}
	for b := range 256 {
		latin1.runes[b] = rune(b)
	}
	sets := map[string][]string{
		"": {"iso-8859-1", "iso8859-1", "iso8859_1", "iso88591", "iso_8859-1", "iso_8859-1:1987"},
		"windows-1252": {"windows-1252", "cp1252", "x-cp1252", "latin1", "l1", "cp819", "ibm819",
			"csisolatin1", "iso-ir-100", "8859-1", "8859_1"},
		"iso-8859-15": {"iso-8859-15", "iso8859-15", "iso885915", "iso_8859-15", "l9", "csisolatin9",
			"8859-15", "8859_15"},
		"iso-8859-2": {"iso-8859-2", "iso8859-2", "iso88592", "iso_8859-2", "iso_8859-2:1987", "l2",
			"latin2", "csisolatin2", "iso-ir-101", "8859-2", "8859_2"},
		"windows-1250": {"windows-1250", "cp1250", "x-cp1250"},
		"windows-1251": {"windows-1251", "cp1251", "x-cp1251"},
		"windows-1254": {"windows-1254", "cp1254", "x-cp1254", "iso-8859-9", "iso8859-9", "iso88599",
			"iso_8859-9", "l5", "latin5"},
		"koi8-r": {"koi8-r", "koi8_r", "koi8", "koi", "cskoi8r"},
	}
	m := map[string]*byteCharset{}
	for name, labels := range sets {
		c := latin1
		if name != "" {
			enc, _ := charset.Lookup(name)
			dec := enc.NewDecoder()
			c = &byteCharset{}
			for b := range 256 {
				out, err := dec.Bytes([]byte{byte(b)})
				r, size := utf8.DecodeRune(out)
				if err != nil || size != len(out) {
					panic("mailparse: " + name + " is not a single-byte charset")
				}
				c.runes[b] = r
			}
		}
		for b := range 256 {
			c.lens[b] = uint8(utf8.RuneLen(c.runes[b]))
		}
		for _, l := range labels {
			m[l] = c
		}
	}
	return m
}()

// b64Value maps the base64 alphabet to 1, the bytes enmime's cleaner drops silently (blanks and
// '=') to 2, and everything else to 0.
var b64Value = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = 1
	}
	for _, c := range []byte("= \t\r\n") {
		t[c] = 2
	}
	return t
}()

// decodeBase64 decodes body as enmime does when its cleaner has nothing to report: blanks and
// '=' (anywhere) dropped, the rest decoded without padding. It declines bodies with other bytes
// (enmime warns about them; cleanBase64 has removed them when the part declared base64) and a
// dangling final character (enmime keeps the content before it with a warning).
func decodeBase64(body []byte) ([]byte, bool) {
	// simple: only the alphabet and line breaks up to the last alphabet character. The
	// decoder skips line breaks, so such a body is decoded as it is, without compacting it.
	n, last, simple := 0, -1, true
	for i, c := range body {
		switch b64Value[c] {
		case 0:
			return nil, false
		case 1:
			n++
			last = i
		default:
			if c != '\r' && c != '\n' && simple {
				simple = false
			}
		}
	}
	if n%4 == 1 {
		return nil, false
	}
	if last >= 0 && !simple {
		// A blank or '=' after the last alphabet character does not count.
		simple = true
		for _, c := range body[:last] {
			if b64Value[c] == 2 && c != '\r' && c != '\n' {
				simple = false
				break
			}
		}
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(n))
	if simple {
		w, err := base64.RawStdEncoding.Decode(out, body[:last+1])
		return out[:w], err == nil && w == len(out)
	}
	var buf [4096]byte // a multiple of 4
	w, k := 0, 0
	flush := func() bool {
		d, err := base64.RawStdEncoding.Decode(out[w:], buf[:k])
		w += d
		k = 0
		return err == nil
	}
	for i := 0; i < len(body); {
		// Copy the run of alphabet characters that starts at i.
		j := i
		for j < len(body) && b64Value[body[j]] == 1 && j-i < len(buf)-k {
			j++
		}
		k += copy(buf[k:], body[i:j])
		if k == len(buf) && !flush() {
			return nil, false
		}
		if j == i {
			j++ // a dropped byte
		}
		i = j
	}
	if k > 0 && !flush() {
		return nil, false
	}
	return out[:w], w == len(out)
}

// decodeQuotedPrintable decodes body as enmime does: through qpCleaner, then
// mime/quotedprintable. The result is allocated once, at an upper bound of its size (every input
// byte gives at most one, escapes give one for three and soft line breaks none). It declines
// bodies that the decoder rejects (enmime fails on them too and Parse keeps the part as text).
func decodeQuotedPrintable(body []byte) ([]byte, bool) {
	size := len(body)
	for i := 0; i < len(body); i++ {
		if body[i] != '=' {
			continue
		}
		switch {
		case i+2 < len(body) && isHex(body[i+1]) && isHex(body[i+2]):
			size -= 2
			i += 2
		case i+1 < len(body) && body[i+1] == '\n':
			size -= 2
		case i+2 < len(body) && body[i+1] == '\r' && body[i+2] == '\n':
			size -= 3
		}
	}
	out := make([]byte, max(size, 0))
	r := quotedprintable.NewReader(&qpCleaner{in: body})
	n := 0
	for {
		if n == len(out) {
			// The bound is usually exact; more can follow only when qpCleaner lost a '='
			// (see there).
			var probe [64]byte
			k, err := r.Read(probe[:])
			out = append(out[:n], probe[:k]...)
			out = out[:cap(out)]
			n += k
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, false
			}
			continue
		}
		k, err := r.Read(out[n:])
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false
		}
	}
	return out[:n], true
}

// qpCleaner is enmime's QPCleaner (github.com/jhillyerd/enmime/v2/internal/coding, MIT licence),
// which enmime runs before mime/quotedprintable: it escapes the bytes that the decoder would
// reject and breaks lines of maxQPLineLen bytes. It is ported as is, reading from a byte slice
// instead of a bufio.Reader, and so are its quirks (when a line break it inserts fills the
// caller's buffer, the byte just read is lost), so that the output is enmime's.
type qpCleaner struct {
	in       []byte // the input not read yet
	overflow []byte
	lineLen  int
}

// maxQPLineLen is enmime's MaxQPLineLen.
const maxQPLineLen = 1024

var (
	qpEscapedEquals = []byte("=3D")
	qpLineBreak     = []byte("=\r\n")
)

func (qp *qpCleaner) Read(dest []byte) (n int, err error) {
	destLen := len(dest)
	if len(qp.overflow) > 0 {
		n = copy(dest, qp.overflow)
		qp.overflow = qp.overflow[n:]
	}
	writeByte := func(in byte) {
		dest[n] = in
		n++
		qp.lineLen++
	}
	safeWriteByte := func(in byte) {
		if n < destLen {
			dest[n] = in
			n++
		} else {
			qp.overflow = append(qp.overflow, in)
		}
		qp.lineLen++
	}
	writeBytes := func(in []byte) {
		nc := copy(dest[n:], in)
		if nc < len(in) {
			qp.overflow = append(qp.overflow, in[nc:]...)
		}
		n += nc
		qp.lineLen += len(in)
	}
	ensureLineLen := func(requested int) {
		if qp.lineLen+requested >= maxQPLineLen {
			writeBytes(qpLineBreak)
			qp.lineLen = 0
		}
	}
	for n < destLen {
		if len(qp.in) == 0 {
			return n, io.EOF
		}
		b := qp.in[0]
		qp.in = qp.in[1:]
		if qp.lineLen >= maxQPLineLen {
			writeBytes(qpLineBreak)
			qp.lineLen = 0
			if n == destLen {
				break
			}
		}
		switch {
		case b == '=':
			ensureLineLen(2)
			if validQPEscape(qp.in[:min(2, len(qp.in))]) {
				safeWriteByte(b)
			} else {
				writeBytes(qpEscapedEquals)
			}
		case b == '\t':
			writeByte(b)
		case b == '\r' || b == '\n':
			writeByte(b)
			qp.lineLen = 0
		case b < ' ' || '~' < b:
			ensureLineLen(2)
			writeBytes([]byte{'=', upperHex[b>>4], upperHex[b&0xF]})
		default:
			writeByte(b)
		}
	}
	return n, nil
}

const upperHex = "0123456789ABCDEF"

// validQPEscape reports whether v, the bytes after a '=', make an escape or a soft line break.
func validQPEscape(v []byte) bool {
	if len(v) > 0 && v[0] == '\n' {
		return true
	}
	if len(v) < 2 {
		return false
	}
	if v[0] == '\r' && v[1] == '\n' {
		return true
	}
	return isHex(v[0]) && isHex(v[1])
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}
