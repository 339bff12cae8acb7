package mailparse

import "bytes"

// splitHeader finds the end of the header block at the start of b: the first empty line (bare
// LF or CRLF). hdrLen is the length of the header lines, bodyStart the offset just after the
// empty line. Without an empty line the whole of b is header and hdrLen == bodyStart == len(b).
func splitHeader(b []byte) (hdrLen, bodyStart int) {
	for i := 0; i < len(b); {
		switch {
		case b[i] == '\n':
			return i, i + 1
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			return i, i + 2
		}
		nl := bytes.IndexByte(b[i:], '\n')
		if nl < 0 {
			break
		}
		i += nl + 1
	}
	return len(b), len(b)
}

// isHeaderStart reports whether b begins with a header field: a name of printable ASCII
// characters other than ':' (trailing blanks before the colon are tolerated, as in obsolete
// syntax), then ':'.
func isHeaderStart(b []byte) bool {
	n := 0
	for n < len(b) && b[n] > ' ' && b[n] < 0x7f && b[n] != ':' {
		n++
	}
	if n == 0 {
		return false
	}
	for n < len(b) && (b[n] == ' ' || b[n] == '\t') {
		n++
	}
	return n < len(b) && b[n] == ':'
}

// multipartSplitter walks the parts of a multipart body delimited by boundary. A delimiter is a
// line that starts with "--boundary" followed only by blanks; the terminator is "--boundary--"
// followed by anything. The line break before a delimiter belongs to the delimiter (RFC 2046
// 5.1.1). The splitter only slices body: it allocates nothing per part.
type multipartSplitter struct {
	body   []byte
	dash   []byte // "--" + boundary
	pos    int    // where the next part's content starts; -1 before the first delimiter
	done   bool
	closed bool // the terminator was seen
}

func newMultipartSplitter(body []byte, boundary string) *multipartSplitter {
	return &multipartSplitter{body: body, dash: []byte("--" + boundary), pos: -1}
}

// next returns the next part's bytes, or ok == false when there are no more parts.
func (s *multipartSplitter) next() (part []byte, ok bool) {
	if s.done {
		return nil, false
	}
	if s.pos < 0 {
		// Skip the preamble.
		_, end, term, found := s.findDelimiter(0)
		if !found || term {
			s.done, s.closed = true, found
			return nil, false
		}
		s.pos = end
	}
	start, end, term, found := s.findDelimiter(s.pos)
	if !found {
		// Missing terminator: the last part runs to the end of the body.
		s.done = true
		return s.body[s.pos:], true
	}
	content := s.body[s.pos:start]
	// Drop the line break that belongs to the delimiter.
	content = bytes.TrimSuffix(content, []byte{'\n'})
	content = bytes.TrimSuffix(content, []byte{'\r'})
	if term {
		s.done, s.closed = true, true
	} else {
		s.pos = end
	}
	return content, true
}

// sawDelimiter reports whether any delimiter or the terminator was found.
func (s *multipartSplitter) sawDelimiter() bool { return s.pos >= 0 || s.closed }

// findDelimiter finds the first delimiter or terminator line at or after from. start is the
// offset of the line, end the offset after its line break.
func (s *multipartSplitter) findDelimiter(from int) (start, end int, term, found bool) {
	b := s.body
	for i := from; i <= len(b); {
		j := bytes.Index(b[i:], s.dash)
		if j < 0 {
			return 0, 0, false, false
		}
		at := i + j
		i = at + 1
		if at > 0 && b[at-1] != '\n' {
			continue
		}
		rest := b[at+len(s.dash):]
		nl := bytes.IndexByte(rest, '\n')
		lineEnd := len(b)
		if nl >= 0 {
			lineEnd = at + len(s.dash) + nl + 1
			rest = rest[:nl]
		}
		if bytes.HasPrefix(rest, []byte("--")) {
			return at, lineEnd, true, true
		}
		if len(bytes.TrimRight(rest, " \t\r")) == 0 {
			return at, lineEnd, false, true
		}
	}
	return 0, 0, false, false
}

// containsFold reports whether b contains the lower-case ASCII word w, ignoring ASCII case. It
// looks for the two cases of w's first byte with bytes.IndexByte, which is vectorised.
func containsFold(b []byte, w string) bool {
	for _, first := range []byte{w[0], w[0] - ('a' - 'A')} {
		for i := 0; i+len(w) <= len(b); i++ {
			j := bytes.IndexByte(b[i:len(b)-len(w)+1], first)
			if j < 0 {
				break
			}
			i += j
			if equalFoldASCII(b[i:i+len(w)], w) {
				return true
			}
		}
	}
	return false
}

func equalFoldASCII(b []byte, lower string) bool {
	for i := range len(lower) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
