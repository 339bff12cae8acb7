package smtpd

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// listener admits connections within the limits (MaxConns, MaxConnsPerIP,
// not shutting down) and answers the others 421 before go-smtp sees them.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, line, reason := l.srv.admit(nc)
		if c != nil {
			return c, nil
		}
		l.srv.m.reject(reason)
		l.srv.log.Info("connection refused", "remote", nc.RemoteAddr().String(), "reason", reason)
		// Inline, not on a goroutine: a short write to a fresh socket only
		// fills its empty kernel buffer, and the deadline bounds the rest.
		_ = nc.SetWriteDeadline(time.Now().Add(goodbyeWriteTimeout))
		_, _ = nc.Write([]byte(line))
		_ = nc.Close()
	}
}

// clientKey is the per-IP limit's key: the client's IPv4 address, or the
// /64 its IPv6 address is in.
func clientKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(ipv6ClientBits); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// conn is an admitted connection. It holds its slot in the connection
// counts until it is closed, applies the DATA-phase deadlines to socket
// reads, turns a failed write or timed-out read into the end of the
// connection, and lets Shutdown close it between transactions.
type conn struct {
	net.Conn
	srv *Server
	key netip.Addr // clientKey of the remote address

	closeOnce sync.Once

	// broken is set when a read timed out or a write failed: the byte
	// stream is out of step with the protocol, so later reads fail at once
	// and the connection closes after the current reply.
	broken atomic.Bool
	// closeAfterReply asks the end of the transaction to close the
	// connection (e.g. an over-long DATA line left go-smtp's reader
	// unusable).
	closeAfterReply atomic.Bool
	// dataUntil is the whole-DATA deadline in Unix nanoseconds while a
	// message is being read, else 0.
	dataUntil atomic.Int64

	// w holds replies written and not yet sent. go-smtp writes (and
	// flushes) every reply line on its own; a pipelining client (RFC 2920)
	// sends a group of commands in one packet and waits for all their
	// replies, so the replies wait here until go-smtp needs more input
	// (Read), the connection closes, or the buffer is full: one write per
	// group instead of one per line. Nothing waits for input with a reply
	// unsent, so a client that does not pipeline sees no difference.
	w struct {
		sync.Mutex
		buf []byte // nil while empty: an idle connection holds none
	}

	mu struct {
		sync.Mutex
		// refused counts RCPTs answered 550 on this connection (over
		// every session: STARTTLS starts a new one).
		refused int
		// inTx: between MAIL and the end of the transaction (the reply to
		// DATA, RSET, a new EHLO). Shutdown leaves such a connection alone.
		inTx   bool
		closed bool
		// handshaking: a TLS handshake began (ClientHello seen) and the
		// TLS layer is not known yet; plain-text replies would corrupt it.
		handshaking bool
		// tls is the TLS layer over this conn once STARTTLS succeeded;
		// replies must go through it.
		tls *tls.Conn
	}
}

// Read applies, during DATA, the per-read pause limit (CommandTimeout)
// capped by the whole-DATA deadline; between commands go-smtp sets the
// command deadline itself.
func (c *conn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.broken.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if until := c.dataUntil.Load(); until != 0 {
		dl := time.Now().Add(c.srv.cfg.CommandTimeout)
		if u := time.Unix(0, until); u.Before(dl) {
			dl = u
		}
		_ = c.Conn.SetReadDeadline(dl)
	}
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.broken.Store(true)
	}
	return n, err
}

// Write adds p to the replies waiting to be sent (see conn.w); past
// replyBufMax they are sent at once.
func (c *conn) Write(p []byte) (int, error) {
	c.w.Lock()
	defer c.w.Unlock()
	c.w.buf = append(c.w.buf, p...)
	if len(c.w.buf) >= replyBufMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// flush sends the replies waiting (in one write).
func (c *conn) flush() error {
	c.w.Lock()
	defer c.w.Unlock()
	return c.flushLocked()
}

// flushLocked closes the socket when the write fails: go-smtp ignores
// reply write errors and would otherwise keep reading commands from a
// client that stopped reading replies. The write is bounded by the
// deadline go-smtp set before its last reply (CommandTimeout).
func (c *conn) flushLocked() error {
	if len(c.w.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.w.buf)
	if cap(c.w.buf) > replyBufKept {
		c.w.buf = nil
	} else {
		c.w.buf = c.w.buf[:0]
	}
	if err != nil {
		c.broken.Store(true)
		_ = c.Conn.Close()
	}
	return err
}

// Close closes the socket and gives the connection's slot back. go-smtp
// calls it when the connection's goroutine ends (and tls.Conn.Close
// forwards to it).
func (c *conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.mu.closed = true
		c.mu.Unlock()
		// The last replies (221 to QUIT, a 421, TLS's close_notify) get
		// a short deadline of their own: tls.Conn.Close sets the write
		// deadline to now once it has queued close_notify here.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(goodbyeWriteTimeout))
		_ = c.flush()
		err = c.Conn.Close()
		c.srv.release(c)
	})
	return err
}

// startTLS notes that a TLS handshake began (tls.Config's
// GetConfigForClient, on the ClientHello).
func (c *conn) startTLS() {
	c.mu.Lock()
	c.mu.handshaking = true
	c.mu.Unlock()
}

// setTLS records the TLS layer go-smtp put over c (at STARTTLS's end and at
// every later EHLO). Shutdown skipped the connection while its handshake
// ran; if it is idle, it is told now.
func (c *conn) setTLS(t *tls.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.tls, c.mu.handshaking = t, false
	if !c.mu.closed && !c.mu.inTx && c.srv.draining.Load() {
		c.goodbyeLocked(lineShuttingDown)
	}
}

// beginTx marks a transaction open; false when the server is shutting
// down (the caller then says goodbye).
func (c *conn) beginTx() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv.draining.Load() {
		return false
	}
	c.mu.inTx = true
	return true
}

// refuse counts a refused recipient and reports whether the connection
// is still within maxRefusedRecipients.
func (c *conn) refuse() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.refused++
	return c.mu.refused <= maxRefusedRecipients
}

// goodbye writes a last reply line and closes the socket, unless closed.
func (c *conn) goodbye(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.closed {
		c.goodbyeLocked(line)
	}
}

// startData enters the DATA phase: reads are bounded by until as a whole.
func (c *conn) startData(until time.Time) { c.dataUntil.Store(until.UnixNano()) }

// endTx ends a transaction (go-smtp calls Session.Reset after the reply to
// DATA, on RSET and on a new EHLO). It closes the connection when its
// stream is broken, or says goodbye when the server is shutting down.
func (c *conn) endTx() {
	c.dataUntil.Store(0)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.inTx = false
	switch {
	case c.mu.closed:
	case c.broken.Load() || c.closeAfterReply.Load():
		c.mu.closed = true
		_ = c.flush() // the reply that ends it (421, 500)
		_ = c.Conn.Close()
	case c.srv.draining.Load():
		c.goodbyeLocked(lineShuttingDown)
	}
}

// clearTx forgets an open transaction without closing (the session
// ended: STARTTLS, or the connection is closing).
func (c *conn) clearTx() {
	c.dataUntil.Store(0)
	c.mu.Lock()
	c.mu.inTx = false
	c.mu.Unlock()
}

// closeIfIdle says goodbye unless a transaction is open or a TLS
// handshake is under way (setTLS says it then) (Shutdown).
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.mu.closed && !c.mu.inTx && !c.mu.handshaking {
		c.goodbyeLocked(lineShuttingDown)
	}
}

// forceClose closes the socket whatever the connection is doing (Shutdown
// past its deadline); the connection's goroutine then ends and calls Close.
func (c *conn) forceClose() {
	c.mu.Lock()
	c.mu.closed = true
	c.mu.Unlock()
	_ = c.Conn.Close()
}

// goodbyeLocked writes a last reply line and closes the socket. It may run
// beside go-smtp's goroutine, which is then blocked reading a command (or
// writing a reply: a socket serialises whole writes, so lines do not mix).
func (c *conn) goodbyeLocked(line string) {
	var w net.Conn = c // behind the replies waiting, if any
	if c.mu.tls != nil {
		w = c.mu.tls // which writes through c
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(goodbyeWriteTimeout))
	_, _ = w.Write([]byte(line))
	_ = c.flush()
	c.mu.closed = true
	_ = c.Conn.Close()
}
