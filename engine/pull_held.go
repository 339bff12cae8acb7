package engine

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/mailwire/mailwire/internal/promtext"

	"github.com/mailwire/mailwire/engine/pull"
)

// puller is the engine's side of the pull API: the hub of waiters, the
// held HTTP requests it answers later, and their metrics.
//
// A held request costs no goroutine: its handler hijacks the connection
// (as the WebSocket upgrade does), installs a heldConn as the nbio
// session and returns, so the worker goes back to the pool; the socket
// loses its read and write deadlines (the waiter's timer ends the wait).
// When the hub wakes the waiter (an event, its deadline, the drain), one
// dispatcher goroutine queues the answer as a job of that connection
// (nbio runs a connection's jobs in order, on the handler workers): it
// reads the log again, writes the HTTP response itself and gives the
// connection back to nbhttp's parser (keep-alive), or closes it when the
// request asked to (Connection: close, HTTP/1.0) or the server drains.
//
// Lifecycle: every held request ends exactly once (finish): answered, or
// its connection closed. Shutdown waits for all of them.
type puller struct {
	s   *Server
	hub *pull.Hub

	mu struct {
		sync.Mutex
		queue []wake
	}
	signal chan struct{} // a wake was queued (cap 1)
	stop   chan struct{}
	done   chan struct{} // the dispatcher ended
	held   sync.WaitGroup

	m pullMetrics
}

type wake struct {
	h     *heldPull
	final bool
}

// pullMetrics: docs/OPERATIONS.md lists them.
type pullMetrics struct {
	set  *metrics.Set
	wake *metrics.PrometheusHistogram
}

// Pull answer outcomes (mailwire_pull_responses_total{outcome}).
const (
	pullEvents  = "events"    // answered with events (at once or after a wait)
	pullEmpty   = "empty"     // the wait passed (or wait=0) without an event
	pullDrained = "drained"   // answered empty because the server drains
	pullTooMany = "too_many"  // 429: the account holds too many
	pullClosed  = "closed"    // the client went away while held
	pullError   = "error"     // the log could not be read
	pullHurried = "pipelined" // the client sent more while held: answered at once, then closed
)

func newPuller(s *Server, cfg pull.Config) *puller {
	p := &puller{s: s, hub: pull.New(cfg), signal: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	p.m.set = s.cfg.Metrics
	p.m.wake = p.m.set.NewPrometheusHistogram(promtext.Describe(`mailwire_pull_wake_seconds`, "Time from an event being stored to a held pull request being woken for it."))
	p.m.set.NewGauge(promtext.Describe(`mailwire_pull_held`, "Pull requests (GET /v1/events/stream) held waiting for events."), func() float64 { return float64(p.hub.Held()) })
	promtext.Describe(`mailwire_pull_responses_total`, "Pull answers by outcome (events, empty, drained, too_many, closed, error, hurried).")
	for _, o := range []string{pullEvents, pullEmpty, pullDrained, pullTooMany, pullClosed, pullError, pullHurried} {
		p.m.set.GetOrCreateCounter(`mailwire_pull_responses_total{outcome="` + o + `"}`)
	}
	return p
}

func (p *puller) outcome(o string) {
	p.m.set.GetOrCreateCounter(`mailwire_pull_responses_total{outcome="` + o + `"}`).Inc()
}

// start runs the dispatcher.
func (p *puller) start() {
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.signal:
				p.dispatch()
			case <-p.stop:
				p.dispatch()
				return
			}
		}
	}()
}

// queue hands a wake to the dispatcher (the hub's Wake: it must not
// block).
func (p *puller) queue(h *heldPull, final bool) {
	p.mu.Lock()
	p.mu.queue = append(p.mu.queue, wake{h, final})
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

func (p *puller) dispatch() {
	p.mu.Lock()
	q := p.mu.queue
	p.mu.queue = nil
	p.mu.Unlock()
	for _, wk := range q {
		h, final := wk.h, wk.final
		// A job of the connection: in order with its other jobs (the
		// close, a request parsed after the answer).
		if !h.nbc.Execute(func() { p.check(h, final) }) {
			p.hub.Done(&h.w)
			h.finish(pullClosed)
		}
	}
}

// drain answers every held request now (empty pages: Connection: close)
// and refuses to hold new ones.
func (p *puller) drain() { p.hub.Drain() }

// shutdown waits for the held requests to be answered (drain first) and
// stops the dispatcher.
func (p *puller) shutdown(ctx context.Context) {
	p.hub.Drain()
	waited := make(chan struct{})
	go func() { p.held.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// heldPull is one held HTTP pull request.
type heldPull struct {
	p      *puller
	w      pull.Waiter
	q      pullQuery
	nbc    *nbio.Conn
	parser *nbhttp.Parser
	// keepAlive: the request allows the connection to serve the next.
	keepAlive bool

	mu struct {
		sync.Mutex
		// restored: the parser is the connection's session again; reads
		// that raced with the change go to it.
		restored bool
		// hurried: the client sent bytes while held (it pipelines): the
		// answer closes the connection.
		hurried bool
	}
	once sync.Once
}

// finish ends the held request (once) with its outcome.
func (h *heldPull) finish(outcome string) {
	h.once.Do(func() {
		h.p.outcome(outcome)
		h.p.held.Done()
	})
}

// newHeld makes the held request of a pull (its waiter not yet in the
// hub): the handler adds it before its first read, and holds it (hold)
// when that read found nothing.
func (p *puller) newHeld(q *pullQuery, wait time.Duration, keepAlive bool) *heldPull {
	h := &heldPull{p: p, q: *q, keepAlive: keepAlive}
	h.w = pull.Waiter{AccountID: q.accountID, Deadline: time.Now().Add(wait)}
	if q.filtered() {
		h.w.Match = h.q.match
	}
	h.w.Wake = func(final bool) { p.queue(h, final) }
	return h
}

// hold takes over the connection of a request whose read (page) found
// nothing after its cursor; its waiter is in the hub, busy. The handler
// returns right after.
func (p *puller) hold(w http.ResponseWriter, h *heldPull, page pullPage) error {
	raw, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.hub.Done(&h.w)
		return err
	}
	nbc := nbioConn(raw)
	hc, _ := raw.(*nbhttp.Conn)
	if nbc == nil || hc == nil || hc.Parser == nil {
		p.hub.Done(&h.w)
		_ = raw.Close()
		return errInternal
	}
	h.nbc, h.parser = nbc, hc.Parser
	p.held.Add(1)
	if sw, ok := w.(*statusWriter); ok {
		sw.code = http.StatusOK // for the request metric: the answer comes later
	}
	_ = nbc.SetReadDeadline(time.Time{})
	_ = nbc.SetWriteDeadline(time.Time{})
	nbc.SetSession(&heldConn{h: h})
	// This handler is a job of the connection: an answer job queued by a
	// wake from here on runs after it.
	p.run(h, &page, false)
	return nil
}

// check is the job a wake queues: read the log again, then answer or
// wait on.
func (p *puller) check(h *heldPull, final bool) { p.run(h, nil, final) }

// run answers h when the read (page, or a new one when nil) found events
// or final is set, else arms its waiter. It runs as a job of h's
// connection.
func (p *puller) run(h *heldPull, page *pullPage, final bool) {
	for {
		if page == nil {
			pg, err := p.s.pullRead(&h.q)
			if err != nil {
				p.s.log.Error("cannot read events for a held pull", "account", h.q.accountID, "error", err)
				p.hub.Done(&h.w)
				h.answerError()
				h.finish(pullError)
				return
			}
			page = &pg
		}
		if len(page.events) > 0 || final {
			p.hub.Done(&h.w)
			h.answer(*page)
			return
		}
		h.q.after = page.cursor
		page = nil
		switch p.hub.Arm(&h.w) {
		case pull.Armed:
			return
		case pull.Retry:
		case pull.Final:
			final = true
		case pull.Gone:
			h.finish(pullClosed)
			return
		}
	}
}

// answer writes the 200 answer and gives the connection back to nbhttp
// (or closes it).
func (h *heldPull) answer(page pullPage) {
	p := h.p
	h.mu.Lock()
	hurried := h.mu.hurried
	keep := h.keepAlive && !hurried && !p.s.draining.Load()
	h.mu.Unlock()
	now := time.Now()
	body := appendPullBody(make([]byte, 0, pullBodyLen(page)), page, now)
	buf := make([]byte, 0, len(body)+160)
	buf = append(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	if !keep {
		buf = append(buf, "\r\nConnection: close"...)
	}
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, body...)
	h.write(buf, keep)
	switch {
	case hurried:
		h.finish(pullHurried)
	case len(page.events) > 0:
		if t := h.w.WokenAt(p.hub); !t.IsZero() {
			p.m.wake.UpdateDuration(t)
		}
		h.finish(pullEvents)
	case p.s.draining.Load():
		h.finish(pullDrained)
	default:
		h.finish(pullEmpty)
	}
}

// answerError writes a 500 (the log could not be read) and closes.
func (h *heldPull) answerError() {
	body := `{"error":"` + codeInternal + `","message":"internal error"}` + "\n"
	h.write([]byte("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body), false)
}

// write sends a whole response. With keep the parser becomes the session
// again first, so the client's next request (it sends it once it read
// this answer) reaches it; the answer job runs before any job of that
// request. Without, our side is shut once the last byte went to the
// kernel (closingConn): the client reads the answer, then EOF, and
// closes (nbio's Close would drop bytes still queued).
func (h *heldPull) write(b []byte, keep bool) {
	idle := h.p.s.cfg.IdleTimeout
	if keep {
		h.mu.Lock()
		h.mu.restored = true
		h.nbc.SetSession(h.parser)
		h.mu.Unlock()
	} else {
		cc := &closingConn{c: h.nbc}
		cc.left.Store(int64(len(b)))
		h.nbc.SetSession(cc)
	}
	// The read deadline is the idle timeout again (for a closing
	// connection, the backstop for a client that never closes).
	now := time.Now()
	_ = h.nbc.SetReadDeadline(now.Add(idle))
	_ = h.nbc.SetWriteDeadline(now.Add(idle))
	_, _ = h.nbc.Write(b)
	if keep {
		// Between requests again, once the answer is queued: it may rest
		// as idle (unproven.go; not while the answer is still going out).
		// A next request that began first keeps it busy.
		if g, ok := h.parser.Processor.(*limitProcessor); ok {
			h.p.s.conns.rested(g.edge)
		}
	}
}

// closingConn is the session of a connection whose last answer is being
// written: once it all went to the kernel our side is shut (FIN after
// the answer); what the client still sends is dropped.
type closingConn struct {
	c    *nbio.Conn
	left atomic.Int64
	once sync.Once
}

func (c *closingConn) UnderlayerConn() net.Conn { return c.c }
func (c *closingConn) Parse([]byte) error       { return nil }
func (c *closingConn) CloseAndClean(error)      {}

// written is nbio's written-bytes report. It runs with the connection's
// lock held (inside Write or the poller's flush), so the descriptor is
// still this connection's; it must not call back into the connection.
func (c *closingConn) written(n int) {
	if c.left.Add(-int64(n)) > 0 {
		return
	}
	c.once.Do(func() {
		if rc, err := c.c.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
		}
	})
}

// heldConn is the nbio session of a connection whose request is held.
type heldConn struct{ h *heldPull }

// UnderlayerConn implements nbhttp.ParserCloser.
func (c *heldConn) UnderlayerConn() net.Conn { return c.h.nbc }

// Parse implements nbhttp.ParserCloser: bytes that arrive while the
// request is held are a pipelined request (or junk). HTTP/1.1 answers in
// order, so the held request is answered now and the connection closed;
// the client resends what it pipelined (RFC 9112 §9.3.2). Bytes that
// raced with the answer giving the connection back go to the parser.
func (c *heldConn) Parse(data []byte) error {
	h := c.h
	h.mu.Lock()
	if h.mu.restored {
		h.mu.Unlock()
		h.p.s.onData(h.nbc, data)
		return nil
	}
	first := !h.mu.hurried
	h.mu.hurried = true
	h.mu.Unlock()
	if first && h.p.hub.Hurry(&h.w) {
		h.p.queue(h, true)
	}
	return nil
}

// CloseAndClean implements nbhttp.ParserCloser: the connection closed
// (the client left, a deadline, shutdown) while the request was held.
func (c *heldConn) CloseAndClean(err error) {
	h := c.h
	if h.p.hub.Cancel(&h.w) {
		h.finish(pullClosed) // armed: no job of it will run
	}
	h.parser.CloseAndClean(err)
	if g, ok := h.parser.Processor.(*limitProcessor); ok {
		g.closed()
	}
}
