package engine

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lesismal/nbio"
)

// wsConn is one WebSocket connection: the nbio connection's session. It
// holds no buffer while idle (rbuf and frag exist only while a frame or
// message is partial).
//
// Fields are grouped by who touches them:
//   - poller: only nbio's poller goroutine (Parse), no lock;
//   - mu: the write side shared by dispatchers, command jobs, the
//     heartbeat and the poller;
//   - atomics: read anywhere.
type wsConn struct {
	nbc *nbio.Conn
	hub *hub
	// Set once before any frame is processed (the upgrade job runs before
	// any command job on this connection), read-only afterwards.
	accountID string
	keyID     string

	// poller-only state.
	dec       frameDecoder
	rateStart int64 // start of the current rate window (unix ns)
	rateCount int32

	// openedAt is the upgrade time (unix ns); keepaliveCleared is owned by
	// the heartbeat goroutine (see hub.heartbeat).
	openedAt         int64
	keepaliveCleared bool

	pending    atomic.Int64 // bytes handed to nbio and not yet written to the socket
	pingSentAt atomic.Int64 // unix ns of the unanswered ping; 0 = none
	lastPingAt atomic.Int64 // unix ns of the last ping (or of the open)
	detached   atomic.Bool  // removed from the hub (closing or closed)

	mu struct {
		sync.Mutex
		closing   bool // a close frame was sent (or the socket is gone)
		closeCode int
		// buffering holds live events while a subscribe (and its replay)
		// is in progress, so they follow the replay (PROTOCOL.md §6).
		buffering bool
		liveBuf   []liveFrame
		liveBytes int
		// replayed holds events a replay sent that were still in the
		// delivery pipeline when it ended, with the attempt number whose
		// live push is then dropped (once; nil almost always).
		replayed map[string]int
	}
}

type liveFrame struct {
	evtID   string
	attempt int
	frame   []byte
}

// UnderlayerConn implements nbhttp.ParserCloser.
func (c *wsConn) UnderlayerConn() net.Conn { return c.nbc }

// CloseAndClean implements nbhttp.ParserCloser: nbio calls it once the
// socket is closed.
func (c *wsConn) CloseAndClean(err error) {
	c.mu.Lock()
	wasClosing := c.mu.closing
	c.mu.closing = true
	c.mu.liveBuf = nil
	c.mu.Unlock()
	if !wasClosing {
		c.hub.s.m.closed(1006) // no close frame from us: abnormal
		c.hub.s.m.dropped(err)
	}
	c.hub.detach(c)
	c.hub.opened(-1)
}

// send hands b to nbio, enforcing the unsent-bytes bound. It reports
// whether b was accepted; over the bound the connection is closed as a
// slow consumer (1008).
func (c *wsConn) send(b []byte) bool {
	if c.isClosing() {
		return false // nothing may follow our close frame (RFC 6455 §5.5.1)
	}
	max := int64(c.hub.s.cfg.WS.MaxPending)
	if c.pending.Load()+int64(len(b)) > max {
		c.slowConsumer()
		return false
	}
	c.pending.Add(int64(len(b)))
	if _, err := c.nbc.Write(b); err != nil {
		return false
	}
	return true
}

// sendFrame encodes and sends one server frame.
func (c *wsConn) sendFrame(op byte, payload []byte) bool {
	return c.send(appendFrame(make([]byte, 0, len(payload)+frameHeaderLen(len(payload))), op, payload))
}

// sendJSON sends a server frame of the given type (metrics label).
func (c *wsConn) sendText(kind string, payload []byte) bool {
	c.hub.s.m.frameOut(kind)
	return c.sendFrame(opText, payload)
}

func (c *wsConn) sendError(msg string) {
	c.sendText("error", errorFrame(msg))
}

// slowConsumer closes a connection whose unsent bytes passed the bound.
// The close frame cannot get through a full buffer: drop the socket.
func (c *wsConn) slowConsumer() {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return
	}
	c.mu.closing = true
	c.mu.closeCode = closePolicy
	c.mu.liveBuf = nil
	c.mu.Unlock()
	c.hub.s.m.wsSlow.Inc()
	c.hub.s.m.closed(closePolicy)
	c.hub.detach(c)
	_ = c.nbc.Close()
}

// fail sends an error frame, then closes with code.
func (c *wsConn) fail(code int, msg string) {
	c.sendError(msg)
	c.closeWith(code, msg)
}

// closeWith starts the closing handshake: it detaches the connection (no
// more events), sends a close frame and gives the client closeGrace to
// answer before the socket is dropped.
func (c *wsConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return
	}
	c.mu.closing = true
	c.mu.closeCode = code
	c.mu.liveBuf = nil
	c.mu.Unlock()
	c.hub.detach(c)
	c.hub.s.m.closed(code)
	frame := appendFrame(nil, opClose, closePayload(code, reason))
	c.pending.Add(int64(len(frame)))
	_, _ = c.nbc.Write(frame)
	_ = c.nbc.SetReadDeadline(time.Now().Add(closeGrace))
}

func (c *wsConn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closing
}

// pushEvent writes (or, during a subscribe, holds) an event frame. It
// reports whether the connection took it.
func (c *wsConn) pushEvent(evtID string, attempt int, frame []byte) bool {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return false
	}
	if c.mu.buffering {
		if len(c.mu.liveBuf) >= liveBufferMax || c.mu.liveBytes+len(frame) > c.hub.s.cfg.WS.MaxPending {
			c.mu.Unlock()
			c.slowConsumer()
			return false
		}
		c.mu.liveBuf = append(c.mu.liveBuf, liveFrame{evtID, attempt, frame})
		c.mu.liveBytes += len(frame)
		c.mu.Unlock()
		return true
	}
	if n, ok := c.mu.replayed[evtID]; ok {
		delete(c.mu.replayed, evtID)
		if len(c.mu.replayed) == 0 {
			c.mu.replayed = nil
		}
		if n == attempt {
			c.mu.Unlock()
			return true // the replay delivered this attempt's event here
		}
	}
	ok, slow := c.writeLocked(frame)
	c.mu.Unlock()
	if slow {
		c.slowConsumer()
	}
	return ok
}

// writeLocked is send for callers holding c.mu, so that frames written
// under the lock keep their order. slow reports that the bound was hit;
// the caller closes the connection after releasing the lock.
func (c *wsConn) writeLocked(b []byte) (ok, slow bool) {
	if c.pending.Load()+int64(len(b)) > int64(c.hub.s.cfg.WS.MaxPending) {
		return false, true
	}
	c.pending.Add(int64(len(b)))
	_, err := c.nbc.Write(b)
	return err == nil, false
}

// Parse implements nbhttp.ParserCloser: nbio's poller hands it the bytes
// it read. Complete frames go to onFrame; a protocol violation closes the
// connection with its code.
func (c *wsConn) Parse(data []byte) error {
	if ferr := c.dec.feed(data, c.onFrame); ferr != nil {
		if ferr.code == closeTooBig {
			c.hub.s.m.frameIn("invalid")
			c.fail(closeTooBig, ferr.msg)
		} else {
			c.protocolError(ferr.msg)
		}
	}
	return nil
}

func (c *wsConn) protocolError(msg string) {
	c.hub.s.m.frameIn("invalid")
	c.closeWith(closeProtocolError, msg)
}

// onFrame handles one control frame or one complete data message
// (payload unmasked, valid only during the call).
func (c *wsConn) onFrame(op byte, payload []byte) {
	switch op {
	case opPing:
		c.sendFrame(opPong, payload)
	case opPong:
		c.pingSentAt.Store(0)
	case opClose:
		c.onClose(payload)
	default:
		c.onMessage(op, payload)
	}
}

// onClose answers a client's close frame and ends the connection.
func (c *wsConn) onClose(payload []byte) {
	c.dec.stop()
	code := 1005
	if len(payload) == 1 {
		c.closeWith(closeProtocolError, "close frame with a 1-byte payload")
		return
	}
	if len(payload) >= 2 {
		code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(code) {
			c.closeWith(closeProtocolError, fmt.Sprintf("invalid close code %d", code))
			return
		}
		if !utf8.Valid(payload[2:]) {
			c.closeWith(closeProtocolError, "close reason is not UTF-8")
			return
		}
	}
	c.mu.Lock()
	answered := c.mu.closing
	c.mu.closing = true
	c.mu.liveBuf = nil
	c.mu.Unlock()
	if !answered {
		// The client started the closing handshake: echo its code.
		c.hub.detach(c)
		c.hub.s.m.closed(code)
		echo := []byte(nil)
		if code != 1005 {
			echo = payload[:2]
		}
		frame := appendFrame(nil, opClose, echo)
		c.pending.Add(int64(len(frame)))
		_, _ = c.nbc.Write(frame)
	}
	// Our close was answered, or we answered theirs: the handshake is done.
	_ = c.nbc.Close()
}

// onMessage handles a complete data message on the poller: limits, then
// the command runs in order on the task pool.
func (c *wsConn) onMessage(op byte, msg []byte) {
	if !c.allowFrame() {
		c.hub.s.m.frameIn("invalid")
		ws := c.hub.s.cfg.WS
		c.fail(closeRateLimited, fmt.Sprintf("rate limited: more than %d frames in %s", ws.RateFrames, ws.RateWindow))
		c.dec.stop()
		return
	}
	if op == opBinary {
		c.hub.s.m.frameIn("binary")
		c.sendError("binary frames are not supported: send JSON text frames")
		return
	}
	if !utf8.Valid(msg) {
		c.hub.s.m.frameIn("invalid")
		c.closeWith(closeInvalidPayload, "text frame is not valid UTF-8")
		c.dec.stop()
		return
	}
	cmd := append([]byte(nil), msg...)
	c.nbc.Execute(func() { c.handleCommand(cmd) })
}

// allowFrame counts a client data message against the rate limit (a fixed
// window per connection).
func (c *wsConn) allowFrame() bool {
	ws := &c.hub.s.cfg.WS
	now := time.Now().UnixNano()
	if now-c.rateStart >= int64(ws.RateWindow) {
		c.rateStart, c.rateCount = now, 0
	}
	c.rateCount++
	return int(c.rateCount) <= ws.RateFrames
}

// dead drops a connection whose pong did not come in time: the peer is
// gone or stuck, so no close handshake is attempted.
func (c *wsConn) dead() {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return
	}
	c.mu.closing = true
	c.mu.liveBuf = nil
	c.mu.Unlock()
	c.hub.s.m.closed(1006)
	c.hub.s.m.drops["pong_timeout"].Inc()
	c.hub.detach(c)
	_ = c.nbc.Close()
}
