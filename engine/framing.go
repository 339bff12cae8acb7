package engine

import (
	"fmt"
	"strings"
)

// Strict HTTP/1.1 framing (RFC 9112), so that a proxy in front cannot be
// desynchronised (request smuggling). nbhttp's parser is lenient: the
// first of two Content-Length headers wins, chunked silently wins over
// Content-Length, "Content-Length : 5" is read as Content-Length, a folded
// line becomes a new header field, and a bare LF on the request line
// makes it wait forever. The checks below refuse each with 400 and close
// the connection.

// headScan checks the raw bytes of a request head for what nbhttp's
// callbacks cannot show: whitespace in a field name or before its colon
// (reported trimmed), obsolete line folding (reported as a new field),
// bare LF and stray CR, and a malformed request line. It stops at the
// head's empty line: the rest of the read is body (or a pipelined
// request, which nbhttp's own checks still cover).
type headScan struct {
	active bool // between the start of a head and its empty line
	line   int  // 0: the request line
	col    int
	inName bool
	prevCR bool
	sp     int // spaces in the request line
}

func (h *headScan) start() { *h = headScan{active: true} }

// scan returns "" or why the head is malformed.
func (h *headScan) scan(data []byte) string {
	for _, b := range data {
		if !h.active {
			return ""
		}
		if h.prevCR {
			h.prevCR = false
			if b != '\n' {
				return "CR not followed by LF"
			}
			if h.line == 0 && h.sp != 2 {
				return "malformed request line"
			}
			if h.col == 0 && h.line > 0 {
				h.active = false // the empty line: end of the head
				continue
			}
			h.line, h.col, h.inName = h.line+1, 0, true
			continue
		}
		switch {
		case b == '\r':
			h.prevCR = true
			continue
		case b == '\n':
			return "bare LF line ending (lines end with CRLF)"
		case h.line == 0:
			if b == ' ' {
				if h.sp++; h.sp > 2 {
					return "malformed request line"
				}
			} else if h.sp == 0 && (b < 'A' || b > 'Z') {
				return "the method must be an upper-case token"
			}
		case h.col == 0 && (b == ' ' || b == '\t'):
			return "obsolete line folding (a header line starting with whitespace)"
		case h.inName && b == ':':
			h.inName = false
		case h.inName && (b == ' ' || b == '\t'):
			return "whitespace in a header field name or before its colon"
		}
		h.col++
	}
	return ""
}

// framing gathers the framing header fields of the request in progress.
type framing struct {
	proto   string
	clCount int
	cl      string
	chunked bool // Transfer-Encoding was given (nbhttp takes only "chunked")
	hosts   int
	bad     string
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (f *framing) header(key, value string) {
	v := strings.Trim(value, " \t")
	switch {
	case strings.EqualFold(key, "Content-Length"):
		f.clCount++
		switch {
		case !digits(v):
			f.bad = fmt.Sprintf("invalid Content-Length %q", quoteShort(value))
		case f.clCount > 1 && v != f.cl:
			f.bad = "two different Content-Length headers"
		}
		f.cl = v
	case strings.EqualFold(key, "Transfer-Encoding"):
		f.chunked = true
	case strings.EqualFold(key, "Host"):
		f.hosts++
	}
}

// problem returns why the head's framing is refused, "" when it is not.
// Identical repeated Content-Length headers are accepted (RFC 9110 §8.6
// allows either).
func (f *framing) problem() string {
	switch {
	case f.bad != "":
		return f.bad
	case f.chunked && f.clCount > 0:
		return "both Transfer-Encoding and Content-Length"
	case f.proto == "HTTP/1.1" && f.hosts != 1:
		return "an HTTP/1.1 request needs exactly one Host header"
	}
	return ""
}
