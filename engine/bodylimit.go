package engine

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

var errBodyTooLarge = errors.New("request body too large")

// limitProcessor wraps nbhttp's request processor to refuse an oversized
// body with 413 as soon as its Content-Length is known (or, for chunked
// bodies, as soon as it grows past the limit) instead of buffering it.
// nbhttp only calls the handler once the whole body is in memory, so this
// is the one place a too-large upload can be stopped early.
//
// It runs on the poller goroutine, inside the parser's lock.
type limitProcessor struct {
	nbhttp.Processor
	s      *Server
	parser *nbhttp.Parser

	method, uri string
	rawMessage  bool // the (first) Content-Type is message/rfc822, as the handler reads it
	typeSeen    bool
	body        int
	refused     bool
	// phase, headLen, headOver and headSize track the request in
	// progress: a head larger than maxHeaderBytes is refused.
	phase uint8
	// headLen counts the raw bytes read since the head began; the read
	// that completes a head may also carry body bytes.
	headLen int
	// headOver: headLen passed the limit in the last read. That read may
	// still complete a head within the limit (its size is then checked
	// exactly); a head not complete by the next read is too large.
	headOver bool
	// headSize is the parsed head's size (request line and header lines).
	headSize int
}

// Request phases seen by limitProcessor.
const (
	phaseIdle uint8 = iota // between requests: the next read starts a head
	phaseHead
	phaseBody
)

func (p *limitProcessor) OnMethod(parser *nbhttp.Parser, method string) {
	p.method, p.uri, p.body, p.refused, p.rawMessage, p.typeSeen = method, "", 0, false, false, false
	p.headSize = len(method) + 1
	p.Processor.OnMethod(parser, method)
}

func (p *limitProcessor) OnProto(parser *nbhttp.Parser, proto string) error {
	p.headSize += len(proto) + 2
	return p.Processor.OnProto(parser, proto)
}

func (p *limitProcessor) OnHeader(parser *nbhttp.Parser, key, value string) {
	p.headSize += len(key) + len(value) + 4 // ": " and CRLF
	if !p.typeSeen && strings.EqualFold(key, "Content-Type") {
		p.typeSeen = true
		mt, _, _ := strings.Cut(value, ";")
		p.rawMessage = strings.EqualFold(strings.TrimSpace(mt), "message/rfc822")
	}
	p.Processor.OnHeader(parser, key, value)
}

// headerBytes accounts n bytes read while a request head may be in
// progress; false when the head grew past maxHeaderBytes (431 is sent).
// The parser only reports a head once it is complete, so this counts raw
// reads: between requests every read may start a head.
func (p *limitProcessor) headerBytes(n int) bool {
	if p.refused {
		return false
	}
	switch p.phase {
	case phaseBody:
		return true // bounded by the body limits
	case phaseIdle:
		p.phase, p.headLen, p.headOver = phaseHead, 0, false
	}
	if p.headOver {
		// The last read took the head past the limit and did not end it.
		p.refuseHead()
		return false
	}
	p.headLen += n
	// Over the limit, this read may still end a head within it and carry
	// the start of the body (a head split across TCP segments): the
	// parser decides, and OnContentLength checks the head's real size.
	// At most one more read is buffered for a head that is too large.
	p.headOver = p.headLen > maxHeaderBytes
	return true
}

// refuseHead answers 431 and closes the connection.
func (p *limitProcessor) refuseHead() {
	if p.refused {
		return
	}
	p.refused = true
	p.s.m.tooLarge.Inc()
	body := fmt.Sprintf(`{"error":%q,"message":"request head is larger than %d bytes"}`, codeTooLarge, maxHeaderBytes)
	resp := fmt.Sprintf("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	_, _ = p.parser.Conn.Write([]byte(resp))
	lingerClose(p.parser.Conn)
}

func (p *limitProcessor) OnComplete(parser *nbhttp.Parser) {
	p.phase = phaseIdle
	if p.refused {
		return // answered already (a refused head without a body): no handler
	}
	p.Processor.OnComplete(parser)
}

func (p *limitProcessor) OnURL(parser *nbhttp.Parser, uri string) error {
	p.uri = uri
	p.headSize += len(uri) + 1
	return p.Processor.OnURL(parser, uri)
}

// limit is the largest body the request's route accepts.
func (p *limitProcessor) limit() int {
	path := p.uri
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if p.method == "POST" && strings.HasPrefix(path, "/v1/inboxes/") && strings.HasSuffix(path, "/inbound") {
		if p.rawMessage {
			// The body is the message itself: --max-message-size exactly.
			return p.s.cfg.MaxMessageSize
		}
		return p.s.maxInboundBody() // JSON carries attachments in base64
	}
	return maxJSONBody
}

func (p *limitProcessor) OnContentLength(parser *nbhttp.Parser, n int) {
	p.phase = phaseBody
	if p.headSize+2 > maxHeaderBytes { // + the empty line
		p.refuseHead()
		return
	}
	if n > p.limit() {
		p.refuse(parser)
		return
	}
	p.Processor.OnContentLength(parser, n)
}

func (p *limitProcessor) OnBody(parser *nbhttp.Parser, data []byte) error {
	p.phase = phaseBody
	if p.refused {
		return errBodyTooLarge
	}
	p.body += len(data)
	if p.body > p.limit() {
		p.refuse(parser)
		return errBodyTooLarge
	}
	return p.Processor.OnBody(parser, data)
}

// refuse answers 413 and closes the connection: the body is never read.
func (p *limitProcessor) refuse(parser *nbhttp.Parser) {
	if p.refused {
		return
	}
	p.refused = true
	p.s.m.tooLarge.Inc()
	body := fmt.Sprintf(`{"error":%q,"message":"request body is larger than the %d bytes this route accepts"}`, codeTooLarge, p.limit())
	resp := fmt.Sprintf("HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	_, _ = parser.Conn.Write([]byte(resp))
	lingerClose(parser.Conn)
}

// lingerClose half-closes c (our FIN goes after the answer already
// written) and discards what the client still sends until it closes or
// lingerGrace passes. Closing at once with unread bytes would make the
// kernel send a reset that can destroy the answer before the client reads
// it.
func lingerClose(c net.Conn) {
	nbc := nbioConn(c)
	if nbc == nil {
		_ = c.Close()
		return
	}
	nbc.SetSession(discarder{nbc})
	if rc, err := nbc.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
	}
	_ = nbc.SetReadDeadline(time.Now().Add(lingerGrace))
}

// nbioConn unwraps the nbio connection under an nbhttp one.
func nbioConn(c net.Conn) *nbio.Conn {
	switch v := c.(type) {
	case *nbio.Conn:
		return v
	case *nbhttp.Conn:
		return nbioConn(v.Conn)
	}
	return nil
}

// discarder is the session of a connection being closed: it reads and
// drops everything (nbhttp.ParserCloser).
type discarder struct{ c *nbio.Conn }

func (d discarder) UnderlayerConn() net.Conn { return d.c }
func (d discarder) Parse([]byte) error       { return nil }
func (d discarder) CloseAndClean(error)      {}
