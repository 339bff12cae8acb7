package mailparse

import (
	"errors"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/jhillyerd/enmime/v2"
	"golang.org/x/net/html/charset"
)

// wordDecoder decodes RFC 2047 encoded words in any charset the HTML5 standard names. It is
// immutable and safe for concurrent use.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// charsetReader never fails: a word in an unknown charset is kept as its raw bytes (made valid
// UTF-8 later), so that one bad word does not stop the other words of the header from decoding.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	if enc, _ := charset.Lookup(label); enc != nil {
		return enc.NewDecoder().Reader(input), nil
	}
	return input, nil
}

// decodeHeader decodes the encoded words of an unstructured header value to valid UTF-8.
func decodeHeader(v string) string {
	if strings.Contains(v, "=?") {
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
	}
	return validUTF8(v)
}

// addresses parses the address-list headers called name into display strings. What cannot be
// parsed is kept as decoded text, one entry per comma-separated piece, with a Warning.
func (p *parser) addresses(h textproto.MIMEHeader, name string) []string {
	out := []string{}
	for _, v := range h.Values(name) {
		if strings.TrimSpace(v) == "" {
			continue
		}
		list, err := enmime.ParseAddressList(v)
		if err == nil {
			for _, a := range list {
				out = append(out, displayAddress(a))
			}
			continue
		}
		if errors.Is(err, mail.ErrHeaderNotPresent) {
			continue
		}
		p.warn("message: cannot parse %s %q: %v", name, v, err)
		for piece := range strings.SplitSeq(v, ",") {
			if list, err := enmime.ParseAddressList(piece); err == nil {
				for _, a := range list {
					out = append(out, displayAddress(a))
				}
			} else if s := decodeHeader(strings.TrimSpace(piece)); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// displayAddress formats a as `Name <addr>`, or `addr` without a name. The name is UTF-8, not
// encoded, and quoted only when it contains characters that would make it parse differently.
func displayAddress(a *mail.Address) string {
	addr := validUTF8(a.Address)
	name := validUTF8(strings.TrimSpace(a.Name))
	if name == "" || name == addr {
		return addr
	}
	if strings.ContainsAny(name, "\"(),:;<>@[\\]") {
		name = `"` + quotedPairs.Replace(name) + `"`
	}
	return name + " <" + addr + ">"
}

var quotedPairs = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// parseDate parses a Date header. The layout nearly all mail uses is tried first: each layout
// mail.ParseDate tries and misses costs a time.ParseError (about 70 allocations in all).
func parseDate(v string) (time.Time, error) {
	if t, err := time.Parse("Mon, 2 Jan 2006 15:04:05 -0700", v); err == nil {
		return t, nil
	}
	return mail.ParseDate(v)
}

// firstID returns the first message id of a Message-ID header value, in angle brackets. A value
// without brackets counts as one id.
func firstID(v string) string {
	if ids := parseIDs(v, true); len(ids) > 0 {
		return ids[0]
	}
	return ""
}

// parseIDs extracts message ids from an In-Reply-To, References or Message-ID value, leniently
// and in order: ids in angle brackets (folding whitespace inside removed), and bare words that
// contain '@' (any bare word when anyWord is set), which get brackets. Comments and quoted
// phrases ("Your message of ...") are skipped.
func parseIDs(v string, anyWord bool) []string {
	ids := []string{}
	for i := 0; i < len(v); {
		switch c := v[i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',':
			i++
		case c == '(':
			i = skipComment(v, i)
		case c == '"':
			j := strings.IndexByte(v[i+1:], '"')
			if j < 0 {
				return ids
			}
			i += j + 2
		case c == '<':
			j := strings.IndexByte(v[i+1:], '>')
			end := len(v)
			if j >= 0 {
				end = i + 1 + j
			}
			id := v[i+1 : end]
			if k := strings.LastIndexByte(id, '<'); k >= 0 {
				id = id[k+1:]
			}
			if id = stripSpace(id); id != "" {
				ids = append(ids, "<"+validUTF8(id)+">")
			}
			i = end + 1
		default:
			j := strings.IndexAny(v[i:], " \t\r\n,(<\"")
			end := len(v)
			if j >= 0 {
				end = i + j
			}
			if w := strings.Trim(v[i:end], ">"); w != "" && (anyWord || strings.Contains(w, "@")) {
				ids = append(ids, "<"+validUTF8(w)+">")
			}
			i = end
		}
	}
	return ids
}

// skipComment returns the offset after the (possibly nested) comment that starts at v[i].
func skipComment(v string, i int) int {
	depth := 0
	for ; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(v)
}

func stripSpace(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}
