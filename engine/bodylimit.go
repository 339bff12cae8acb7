package engine

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"

	"github.com/mailwire/mailwire/internal/limits"
)

var errBodyTooLarge = errors.New("request body too large")

// limitProcessor is the request gate: it wraps nbhttp's request processor
// on every HTTP connection and answers, before a body is read or a
// handler runs:
//
//   - 431 for a head over maxHeaderBytes, 413 for a body over the route's
//     limit (from Content-Length, or as a chunked body grows);
//   - 400 for ambiguous or malformed framing (RFC 9112: conflicting or
//     bad Content-Length, Content-Length with Transfer-Encoding, a space
//     before a header's colon, obsolete line folding, bare LF, a missing
//     Host), 501 for an unknown transfer coding;
//   - 507 for inbound mail while free disk is below --min-free-disk, 503
//   - Retry-After when the message memory budget is full.
//
// Each refusal closes the connection after the answer. nbhttp only calls
// the handler once the whole body is in memory, so this is the one place
// a body can be stopped before it is buffered. A request's memory
// reservation is released once its handler has run.
//
// Its callbacks run on the poller goroutine, inside the parser.
type limitProcessor struct {
	nbhttp.Processor
	s      *Server
	parser *nbhttp.Parser

	method, uri string
	rawMessage  bool // the (first) Content-Type is message/rfc822, as the handler reads it
	typeSeen    bool
	// expect: the request asked for 100 Continue before its body
	// (Expect: 100-continue, RFC 9110 §10.1.1).
	expect  bool
	body    int
	refused bool
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
	// scan checks the raw head; frame the parsed header fields.
	scan  headScan
	frame framing

	// firstHead closes the connection unless a first request head is
	// complete within headTimeout; headSeen tells it one was.
	firstHead *time.Timer
	headSeen  atomic.Bool
	// edge is the connection's entry in Server.conns: the first head
	// marks it proven (no longer evicted to make room).
	edge *edgeConn
	// endJob is ended as a func value, made once per connection (one job
	// per request is queued with it).
	endJob func()

	// raw is the body of a large raw inbound message, read straight into
	// the buffer it is stored from (ownBody); nil for other requests.
	raw *rawBody

	// reserved is the request's share of the message memory budget,
	// released (once) after its handler ran or when the connection goes.
	reserved atomic.Int64
}

// Request phases seen by limitProcessor.
const (
	phaseIdle uint8 = iota // between requests: the next read starts a head
	phaseHead
	phaseBody
)

func (p *limitProcessor) OnMethod(parser *nbhttp.Parser, method string) {
	p.s.conns.begin(p.edge) // a request in progress: not idle (unproven.go)
	p.method, p.uri, p.body, p.refused, p.rawMessage, p.typeSeen, p.raw, p.expect = method, "", 0, false, false, false, nil, false
	p.frame = framing{}
	p.headSize = len(method) + 1
	p.Processor.OnMethod(parser, method)
}

func (p *limitProcessor) OnProto(parser *nbhttp.Parser, proto string) error {
	p.headSize += len(proto) + 2
	p.frame.proto = proto
	return p.Processor.OnProto(parser, proto)
}

func (p *limitProcessor) OnHeader(parser *nbhttp.Parser, key, value string) {
	p.headSize += len(key) + len(value) + 4 // ": " and CRLF
	p.frame.header(key, value)
	if strings.EqualFold(key, "Expect") && strings.EqualFold(strings.TrimSpace(value), "100-continue") {
		p.expect = true
	}
	if !p.typeSeen && strings.EqualFold(key, "Content-Type") {
		p.typeSeen = true
		mt, _, _ := strings.Cut(value, ";")
		p.rawMessage = strings.EqualFold(strings.TrimSpace(mt), "message/rfc822")
	}
	p.Processor.OnHeader(parser, key, value)
}

// feed checks n raw bytes read while a request head may be in progress
// (data, when the read starts or continues a head); false when the
// request was refused (the answer is sent, the connection closing). The
// parser only reports a head once it is complete, so this counts raw
// reads: between requests every read may start a head.
func (p *limitProcessor) feed(data []byte) bool {
	if p.refused {
		return false
	}
	switch p.phase {
	case phaseBody:
		return true // bounded by the body limits
	case phaseIdle:
		p.phase, p.headLen, p.headOver = phaseHead, 0, false
		p.scan.start()
	}
	if why := p.scan.scan(data); why != "" {
		p.refuseBad(http.StatusBadRequest, why)
		return false
	}
	if p.headOver {
		// The last read took the head past the limit and did not end it.
		p.refuseHead()
		return false
	}
	p.headLen += len(data)
	// Over the limit, this read may still end a head within it and carry
	// the start of the body (a head split across TCP segments): the
	// parser decides, and OnContentLength checks the head's real size.
	// At most one more read is buffered for a head that is too large.
	p.headOver = p.headLen > maxHeaderBytes
	return true
}

// refuseHead answers 431 and closes the connection.
func (p *limitProcessor) refuseHead() {
	p.s.m.tooLarge.Inc()
	p.answer(http.StatusRequestHeaderFieldsTooLarge, codeTooLarge, fmt.Sprintf("request head is larger than %d bytes", maxHeaderBytes), nil)
}

func (p *limitProcessor) OnComplete(parser *nbhttp.Parser) {
	p.phase = phaseIdle
	if p.refused {
		return // answered already (a refused head without a body): no handler
	}
	p.Processor.OnComplete(parser)
	// After the handler (and its response): the connection may rest as
	// idle, unless the handler took it over (a WebSocket, a held pull).
	if p.edge != nil {
		parser.Execute(p.endJob)
	}
	if p.reserved.Load() != 0 {
		// Jobs of one connection run in order, and queued jobs run even
		// if the connection closes: this runs right after the handler.
		if !parser.Execute(p.release) {
			p.release() // the connection closed: no handler will run
		}
	}
}

// ended is the job after a request's handler (endJob): the request was
// answered; the connection rests as idle unless the handler took it over.
func (p *limitProcessor) ended() { p.s.conns.end(p.edge, p.edge.c.Session() == p.parser) }

func (p *limitProcessor) release() { p.s.deps.Limits.Memory.Release(p.reserved.Swap(0)) }

// closed is called when the connection goes.
func (p *limitProcessor) closed() {
	p.firstHead.Stop()
	p.release()
}

func (p *limitProcessor) OnURL(parser *nbhttp.Parser, uri string) error {
	p.uri = uri
	p.headSize += len(uri) + 1
	return p.Processor.OnURL(parser, uri)
}

// inbound reports whether the request is POST /v1/inboxes/{id}/inbound.
func (p *limitProcessor) inbound() bool {
	path, _, _ := strings.Cut(p.uri, "?")
	return p.method == "POST" && strings.HasPrefix(path, "/v1/inboxes/") && strings.HasSuffix(path, "/inbound")
}

// limit is the largest body the request's route accepts.
func (p *limitProcessor) limit() int {
	if p.inbound() {
		if p.rawMessage {
			// The body is the message itself: --max-message-size exactly.
			return p.s.cfg.MaxMessageSize
		}
		return p.s.maxInboundBody() // JSON carries attachments in base64
	}
	return maxJSONBody
}

// OnContentLength is called once per request, at the end of its head and
// before any body (n is -1 for a chunked body): every check of the head
// happens here.
func (p *limitProcessor) OnContentLength(parser *nbhttp.Parser, n int) {
	p.phase = phaseBody
	if !p.headSeen.Swap(true) {
		p.firstHead.Stop()
		p.s.conns.proven(p.edge)
	}
	switch {
	case p.headSize+2 > maxHeaderBytes: // + the empty line
		p.refuseHead()
		return
	case p.frame.problem() != "":
		p.refuseBad(http.StatusBadRequest, p.frame.problem())
		return
	case n > p.limit():
		p.refuseBody()
		return
	case p.inbound() && !p.s.deps.Limits.Disk.Admit("http"):
		p.answer(http.StatusInsufficientStorage, codeInsufficientStorage,
			"the server is low on disk and takes no mail now; retry later", map[string]string{"Retry-After": "60"})
		return
	}
	if n > 0 && !p.reserve(n) {
		return
	}
	p.Processor.OnContentLength(parser, n)
	p.ownBody(n)
	if p.expect && n != 0 && p.frame.proto == "HTTP/1.1" {
		// Admitted: the client may send the body now (curl otherwise
		// waits a second for this before every large upload). Behind
		// the connection's queued jobs, as answers are.
		cont := func() { _, _ = p.parser.Conn.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")) }
		p.parser.Execute(cont)
	}
}

// ownBodyFromBytes is the Content-Length from which a raw inbound message
// is read into a buffer of the gate's own (ownBody).
const ownBodyFromBytes = 256 << 10

// ownBody gives a raw inbound message of n bytes (from ownBodyFromBytes
// on) a body of its own: OnBody appends to the buffer ingest stores it
// from (ingest.Service.RawBuffer), instead of nbhttp's pooled body
// buffers, which the handler would copy out of (a message-sized copy
// more while it is stored). The buffer is allocated once a share of the
// body has arrived (1 MiB or a sixteenth), not at the head: heads alone
// (with a bad key, say) make the server allocate nothing.
func (p *limitProcessor) ownBody(n int) {
	if n < ownBodyFromBytes || !p.inbound() || !p.rawMessage || p.s.deps.Ingest == nil {
		return
	}
	sp, ok := p.Processor.(interface{ Request() *http.Request })
	if !ok {
		return
	}
	if r := sp.Request(); r != nil && r.Body == nil {
		p.raw = &rawBody{n: n}
		r.Body = p.raw
	}
}

// reserve takes n body bytes' share of the memory budget, or answers 503.
func (p *limitProcessor) reserve(n int) bool {
	cost := limits.MessageCost(n)
	if !p.s.deps.Limits.Memory.TryAcquire(cost, "http") {
		p.answer(http.StatusServiceUnavailable, codeBusy, "the server has too many messages in flight; retry shortly",
			map[string]string{"Retry-After": strconv.Itoa(busyRetryAfter)})
		return false
	}
	p.reserved.Add(cost)
	return true
}

func (p *limitProcessor) OnBody(parser *nbhttp.Parser, data []byte) error {
	p.phase = phaseBody
	if p.refused {
		return errBodyTooLarge
	}
	p.body += len(data)
	if p.body > p.limit() {
		p.refuseBody()
		return errBodyTooLarge
	}
	if p.frame.chunked && !p.reserve(len(data)) { // a chunked body reserves as it grows
		return errBodyTooLarge
	}
	if p.raw != nil {
		if p.raw.buf == nil {
			// Allocated once a share of the body is here: a head alone
			// does not make the server allocate the message.
			if from := min(p.raw.n, max(1<<20, p.raw.n/16)); len(p.raw.pre)+len(data) < from {
				if p.raw.pre == nil {
					p.raw.pre = make([]byte, 0, from)
				}
				p.raw.pre = append(p.raw.pre, data...)
				return nil
			}
			p.raw.buf = append(p.s.deps.Ingest.RawBuffer(p.raw.n), p.raw.pre...)
			p.raw.pre = nil
		}
		// Within its capacity: the parser passes Content-Length bytes.
		p.raw.buf = append(p.raw.buf, data...)
		return nil
	}
	return p.Processor.OnBody(parser, data)
}

// rawBody is the body ownBody gives a request.
type rawBody struct {
	buf []byte
	off int    // read so far
	n   int    // Content-Length
	pre []byte // the first bytes, until buf is allocated
}

func (b *rawBody) Read(p []byte) (int, error) {
	if b.off >= len(b.buf) {
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

// Close lets go of the buffer (nbhttp closes a body after its handler).
func (b *rawBody) Close() error {
	b.buf, b.pre = nil, nil
	return nil
}

// take returns the whole body of n bytes, when nothing of it was read,
// and hands it over: the body reads as empty afterwards.
func (b *rawBody) take(n int64) ([]byte, bool) {
	if b.off != 0 || int64(len(b.buf)) != n {
		return nil, false
	}
	buf := b.buf
	b.buf = nil
	return buf, true
}

// refuseBody answers 413: the body is never read.
func (p *limitProcessor) refuseBody() {
	p.s.m.tooLarge.Inc()
	p.answer(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body is larger than the %d bytes this route accepts", p.limit()), nil)
}

// refuseBad answers a malformed request (400, or 501 for an unknown
// transfer coding).
func (p *limitProcessor) refuseBad(status int, why string) {
	p.s.m.badFraming.Inc()
	p.answer(status, codeBadRequest, "malformed request: "+why, nil)
}

// answer writes a complete error answer, refuses the rest of the request
// and closes the connection (lingering, so the answer is not destroyed by
// a reset).
func (p *limitProcessor) answer(status int, code, msg string, hdr map[string]string) {
	if p.refused {
		return
	}
	p.refused = true
	p.release()
	p.s.conns.refused(p.edge) // lingering: never evicted as idle
	body := fmt.Sprintf(`{"error":%q,"message":%q}`, code, msg)
	var extra strings.Builder
	for k, v := range hdr {
		extra.WriteString(k + ": " + v + "\r\n")
	}
	resp := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), extra.String(), body)
	// Behind the connection's queued jobs: a request pipelined before
	// this one is answered first (its handler may have stored a message).
	// Meanwhile reads are dropped (refused).
	write := func() {
		_, _ = p.parser.Conn.Write([]byte(resp))
		lingerClose(p.parser.Conn)
	}
	if !p.parser.Execute(write) {
		write()
	}
}

// parse hands data to nbhttp's parser: a parse error (which nbhttp closes
// on without a word) is answered 400 (501 for an unknown transfer coding).
func (s *Server) parse(g *limitProcessor, p *nbhttp.Parser, data []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("HTTP parser panicked", "panic", fmt.Sprint(v))
			_ = p.Conn.Close()
		}
	}()
	err := p.Parse(data)
	switch {
	case err == nil:
	case g.refused:
		// Answered and lingering: the rest is discarded.
	default:
		status := http.StatusBadRequest
		if msg := err.Error(); strings.Contains(msg, "unsupported transfer encoding") && strings.HasSuffix(strings.ToLower(strings.TrimRight(msg, `"`)), "chunked") {
			status = http.StatusNotImplemented // RFC 9112 §6.1: an unknown coding before chunked
		}
		g.refuseBad(status, err.Error())
	}
}

// lingerClose half-closes c (our FIN goes after the answer already
// written); what the client still sends is discarded (the gate refused
// the connection: feed drops it) until it closes or lingerGrace passes.
// It runs as a job of the connection (answer), so it leaves the session
// alone: the poller reads it concurrently. Closing at once with unread bytes would make the
// kernel send a reset that can destroy the answer before the client reads
// it.
func lingerClose(c net.Conn) {
	nbc := nbioConn(c)
	if nbc == nil {
		_ = c.Close()
		return
	}
	if closed, _ := nbc.IsClosed(); !closed {
		if rc, err := nbc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
		}
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
