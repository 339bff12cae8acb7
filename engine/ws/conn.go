package ws

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

// conn is one WebSocket connection: the nbio connection's session. It
// holds no buffer while idle (the decoder's buffers exist only while a
// frame or message is partial).
//
// Frames are handed to nbio with WriteShared: what the socket cannot take
// stays queued by reference, so an event frame encoded once by Hub.Push
// is one copy however many connections fall behind on it. A frame handed
// to nbio must never be modified again.
//
// Fields are grouped by who touches them:
//   - set before the 101 is written, read-only afterwards;
//   - poller: only nbio's poller goroutine (Parse), no lock;
//   - mu: the write side, shared by dispatchers, command jobs, the
//     heartbeat and the poller;
//   - atomics: read anywhere.
type conn struct {
	nbc       *nbio.Conn
	hub       *Hub
	accountID string
	keyID     string
	openedAt  int64 // unix ns of the upgrade

	// poller-only state.
	dec       frameDecoder
	rateStart int64 // start of the current rate window (unix ns)
	rateCount int32

	// keepaliveCleared is owned by the heartbeat goroutine.
	keepaliveCleared bool

	pending    atomic.Int64 // bytes handed to nbio and not yet written to the socket
	written    atomic.Int64 // bytes nbio wrote to the socket, ever (settles mu.queue)
	pingSentAt atomic.Int64 // unix ns of the unanswered ping; 0 = none
	lastPingAt atomic.Int64 // unix ns of the last ping (or of the open)
	detached   atomic.Bool  // removed from the hub (closing or closed)
	// acking: the connection subscribed with "ack": true (PROTOCOL.md §6);
	// written under mu, read by pushes under mu or atomically.
	acking atomic.Bool
	// ackCredit counts event frames written to the connection and not yet
	// acked: an ack within it does not count against the rate limit (a
	// client that acks every event would otherwise be closed with 4029
	// above 3 events a second).
	ackCredit atomic.Int64

	mu struct {
		sync.Mutex
		// closing: close began (a close frame was queued, or the socket
		// is gone). Nothing is written after it but the close frame.
		closing bool
		// hold is set while a subscribe (and its replay) is in progress:
		// live frames wait there so they follow the replay (PROTOCOL.md
		// §6). A pointer, nil almost always: an idle connection does not
		// carry the slice and count (they put conn in a larger size class).
		// Commands run one at a time per connection (nbio's Execute), so
		// two subscribes never hold at once.
		hold *holdState
		// replayed holds events a replay sent that were still in the
		// delivery pipeline when it ended, with the attempt whose live
		// push is then dropped (once; nil almost always).
		replayed map[string]int
		// queue lists the frames handed to nbio that may not be written
		// completely yet, oldest first; queued is the stream offset at the
		// end of the last one and queuedCost what they hold (frameCost
		// each): the amount bounded by MaxPending. nil while idle.
		queue      []queuedFrame
		queued     int64
		queuedCost int64
	}
}

// holdState is what a connection holds during a subscribe: the live
// frames that wait for it to end, and their frameCost.
type holdState struct {
	held      []heldFrame
	heldBytes int
}

// heldBytesLocked is what the frames held during a subscribe cost (0
// when none is in progress). Callers hold c.mu.
func (c *conn) heldBytesLocked() int64 {
	if c.mu.hold == nil {
		return 0
	}
	return int64(c.mu.hold.heldBytes)
}

// heldFrame is a live frame waiting for a subscribe to end; its push
// learns the frame's fate through tr (nil when the push already
// succeeded on another connection).
type heldFrame struct {
	evtID   string
	attempt int
	frame   []byte
	tr      *heldPush
}

// queuedFrame is a frame handed to nbio: where it ends in the
// connection's byte stream and what it holds until then.
type queuedFrame struct {
	end  int64
	cost int64
}

// frameOverhead is what one queued frame costs beyond its bytes: nbio's
// queue entry (toWrite and its buffer pointer), its slot in nbio's write
// list and in mu.queue; it rounds up, so that many tiny frames (pongs)
// count for what they hold too.
const frameOverhead = 128

// frameCost is the memory a frame held for a connection accounts for:
// its whole buffer (a frame is kept alive whole until its last byte is
// written) and the queue entries around it.
func frameCost(b []byte) int64 { return int64(cap(b)) + frameOverhead }

// UnderlayerConn implements nbhttp.ParserCloser.
func (c *conn) UnderlayerConn() net.Conn { return c.nbc }

// CloseAndClean implements nbhttp.ParserCloser: nbio calls it once the
// socket is closed, whoever closed it.
func (c *conn) CloseAndClean(err error) {
	if c.end(closeAbnormal, nil, nil) {
		c.hub.m.dropped(err)
	}
	c.hub.open.Add(-1)
}

// end marks the connection closing (once) and undoes its registration:
// held frames are resolved as not written, the connection leaves the
// index and the registry, and the close is counted under code. It
// reports whether this call did it (false: closing had begun).
//
// last (an error frame saying why, within MaxPending) and then
// closeFrame (past MaxPending if need be: a few bytes, and the socket
// goes within closeGrace) are written in the same critical section that
// marks the connection closing, so no frame of another writer (a push, a
// replay) can come between them: after the error frame, the close.
func (c *conn) end(code int, last, closeFrame []byte) bool {
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return false
	}
	if last != nil {
		_ = c.writeLocked(last) // over the bound (a slow consumer) it is left out
	}
	c.mu.closing = true
	if closeFrame != nil {
		// Past MaxPending if need be (nbio drops what it still holds when
		// the socket goes); queued by reference like every frame.
		c.pending.Add(int64(len(closeFrame)))
		_, _ = c.nbc.WriteShared(closeFrame)
	}
	var held []heldFrame
	if c.mu.hold != nil {
		held = c.mu.hold.held
	}
	c.mu.hold, c.mu.replayed = nil, nil
	c.mu.queue, c.mu.queuedCost = nil, 0 // nothing is checked against MaxPending any more
	c.mu.Unlock()
	// Out of the index first, so no new push matches a connection that
	// is going; then the held frames are resolved as not written.
	c.hub.detach(c)
	for _, hf := range held {
		hf.tr.resolve(false, false)
	}
	c.hub.m.closed(code)
	return true
}

// close is the one way the server ends a connection: it ends it (see end)
// and queues a close frame with code and reason, then gives the client
// closeGrace to answer before nbio drops the socket. A frame queued behind
// a slow consumer's backlog reaches the client only if it reads that far;
// otherwise it sees the TCP connection end (1006 in most libraries).
func (c *conn) close(code int, reason string) { c.closeAfter(nil, code, reason) }

// closeAfter is close with a frame written just before the close frame
// and nothing between them (see end).
func (c *conn) closeAfter(last []byte, code int, reason string) {
	if !c.end(code, last, appendFrame(nil, opClose, closePayload(code, reason))) {
		return
	}
	_ = c.nbc.SetReadDeadline(time.Now().Add(closeGrace))
}

// fail sends an error frame saying why, then closes with code; no other
// frame comes between the two.
func (c *conn) fail(code int, msg string) {
	c.hub.m.frameOut("error")
	c.closeAfter(textFrame(errorFrame(msg)), code, msg)
}

// writeResult is what writeLocked did with a frame.
type writeResult uint8

const (
	wrote  writeResult = iota + 1
	closed             // closing already: nothing may follow our close frame (RFC 6455 §5.5.1)
	slow               // over MaxPending: the caller closes the connection (1008) after unlocking
	failed             // nbio refused the write (the socket is going)
)

// writeLocked hands b to nbio, enforcing the MaxPending bound on what
// the connection holds: the frames not completely written (whole, with
// their overhead: see frameCost), the live frames held during a
// subscribe, and b. Callers hold c.mu, so frames keep their order. b is
// queued by reference and must not be modified afterwards.
func (c *conn) writeLocked(b []byte) writeResult {
	if c.mu.closing {
		return closed
	}
	cost := frameCost(b)
	if c.unsentCostLocked()+c.heldBytesLocked()+cost > int64(c.hub.cfg.MaxPending) {
		return slow
	}
	// Queued before the write: nbio reports the bytes it writes (to
	// OnWritten) from inside WriteShared and from its poller.
	c.mu.queued += int64(len(b))
	c.mu.queue = append(c.mu.queue, queuedFrame{end: c.mu.queued, cost: cost})
	c.mu.queuedCost += cost
	c.pending.Add(int64(len(b)))
	if _, err := c.nbc.WriteShared(b); err != nil {
		return failed
	}
	// Drop the entries of what the socket took at once (nbio reported it
	// from inside WriteShared): an idle connection keeps no queue.
	c.unsentCostLocked()
	return wrote
}

// unsentCostLocked drops the frames nbio has written completely from
// mu.queue and returns what the others hold. Callers hold c.mu.
func (c *conn) unsentCostLocked() int64 {
	w := c.written.Load()
	q := c.mu.queue
	i := 0
	for i < len(q) && q[i].end <= w {
		c.mu.queuedCost -= q[i].cost
		i++
	}
	if i == len(q) {
		c.mu.queue = nil // idle: no backing array kept
	} else {
		c.mu.queue = q[i:]
	}
	return c.mu.queuedCost
}

// send writes b (not under c.mu); over the bound the connection is closed
// as a slow consumer. It reports whether b was accepted.
func (c *conn) send(b []byte) bool {
	c.mu.Lock()
	r := c.writeLocked(b)
	c.mu.Unlock()
	if r == slow {
		c.slowConsumer()
	}
	return r == wrote
}

func (c *conn) slowConsumer() {
	c.hub.m.slow.Inc()
	c.hub.slowLog.Warn("websocket closed: slow consumer (1008)", "account", c.accountID, "key", c.keyID,
		"max_pending_bytes", c.hub.cfg.MaxPending, "pending_bytes", c.pending.Load())
	c.close(closePolicy, fmt.Sprintf("slow consumer: more than %d bytes unsent", c.hub.cfg.MaxPending))
}

// sendText sends a server text frame of the given kind (metrics label).
func (c *conn) sendText(kind string, payload []byte) bool {
	c.hub.m.frameOut(kind)
	return c.send(textFrame(payload))
}

// textFrame is payload as one server text frame.
func textFrame(payload []byte) []byte {
	return appendFrame(make([]byte, 0, len(payload)+frameHeaderLen(len(payload))), opText, payload)
}

func (c *conn) sendError(msg string) { c.sendText("error", errorFrame(msg)) }

// pushResult is what pushEvent did with a live frame.
type pushResult uint8

const (
	pushWritten pushResult = iota + 1
	pushDeduped            // the replay had written this attempt's event here: counts as written
	pushHeld               // held until the subscribe in progress ends
	pushFailed             // the connection could not take it (slow consumer: closed)
	pushGone               // the connection is closing or its socket is gone: not a match any more
)

// pushEvent writes (or, during a subscribe, holds) a live event frame and
// reports whether the connection acks (read under c.mu, so consistent
// with the write). A held frame registers with *trp, allocating it on
// first use.
func (c *conn) pushEvent(evtID string, attempt int, frame []byte, trp **heldPush, done func(pushOutcome)) (pushResult, bool) {
	c.mu.Lock()
	acking := c.acking.Load()
	if c.mu.closing {
		c.mu.Unlock()
		return pushGone, acking
	}
	if h := c.mu.hold; h != nil {
		cost := frameCost(frame)
		if len(h.held) >= heldFramesMax || c.unsentCostLocked()+int64(h.heldBytes)+cost > int64(c.hub.cfg.MaxPending) {
			c.mu.Unlock()
			c.slowConsumer()
			return pushFailed, acking
		}
		if *trp == nil {
			*trp = newHeldPush(done)
		}
		(*trp).pending.Add(1)
		h.held = append(h.held, heldFrame{evtID, attempt, frame, *trp})
		h.heldBytes += int(cost)
		c.mu.Unlock()
		return pushHeld, acking
	}
	if n, ok := c.mu.replayed[evtID]; ok {
		delete(c.mu.replayed, evtID)
		if len(c.mu.replayed) == 0 {
			c.mu.replayed = nil
		}
		if n == attempt {
			c.mu.Unlock()
			return pushDeduped, acking
		}
	}
	// The credit comes before the write: the client may ack the frame
	// (and the poller read the ack) before writeLocked returns.
	c.addAckCredit()
	r := c.writeLocked(frame)
	if r != wrote {
		c.takeAckCredit()
	}
	c.mu.Unlock()
	switch r {
	case wrote:
		return pushWritten, acking
	case slow:
		c.slowConsumer()
		return pushFailed, acking
	}
	return pushGone, acking // closed, or nbio refused the write: the socket is going
}

// ackCreditMax bounds the acks a connection may send beyond the rate
// limit (one per event frame it received and has not acked yet).
const ackCreditMax = 10000

// addAckCredit grants one ack for an event frame, before it is written
// (taken back with takeAckCredit when the write does not happen).
func (c *conn) addAckCredit() {
	for {
		n := c.ackCredit.Load()
		if n >= ackCreditMax || c.ackCredit.CompareAndSwap(n, n+1) {
			return
		}
	}
}

// Parse implements nbhttp.ParserCloser: nbio's poller hands it the bytes
// it read. Complete frames go to onFrame; a protocol violation closes the
// connection once the frames before it have been answered.
func (c *conn) Parse(data []byte) error {
	if ferr := c.dec.feed(data, c.onFrame); ferr != nil {
		c.hub.m.frameIn("invalid")
		if ferr.code == closeTooBig {
			c.later(func() { c.fail(closeTooBig, ferr.msg) })
		} else {
			c.later(func() { c.close(ferr.code, ferr.msg) })
		}
	}
	return nil
}

// later runs f after the commands already queued for this connection, so
// that frames which arrived before a violation are answered first
// (PROTOCOL.md §2).
func (c *conn) later(f func()) { c.nbc.Execute(f) }

// onFrame handles one control frame or one complete data message
// (payload unmasked, valid only during the call).
func (c *conn) onFrame(op byte, payload []byte) {
	switch op {
	case opPing:
		c.send(appendFrame(make([]byte, 0, len(payload)+2), opPong, payload))
	case opPong:
		c.pingSentAt.Store(0)
	case opClose:
		c.onClose(payload)
	default:
		c.onMessage(op, payload)
	}
}

// onClose answers a client's close frame and ends the connection.
func (c *conn) onClose(payload []byte) {
	c.dec.stop()
	code := closeNoStatus
	switch {
	case len(payload) == 1:
		c.later(func() { c.close(closeProtocolError, "close frame with a 1-byte payload") })
		return
	case len(payload) >= 2:
		code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(code) {
			c.later(func() { c.close(closeProtocolError, fmt.Sprintf("invalid close code %d", code)) })
			return
		}
		if !utf8.Valid(payload[2:]) {
			c.later(func() { c.close(closeProtocolError, "close reason is not UTF-8") })
			return
		}
	}
	var echo []byte
	if code != closeNoStatus {
		echo = append(echo, payload[:2]...)
	}
	// The client started the closing handshake (or answered ours): it
	// reads nothing more, so commands still queued are dropped; the
	// connection leaves the account's count at once (a client that closes
	// and reconnects must not meet its own old connection at the cap).
	// Echo its code and drop the socket: the handshake is complete.
	c.end(code, nil, appendFrame(nil, opClose, echo))
	_ = c.nbc.Close()
}

// onMessage handles a complete data message on the poller: limits, then
// the command runs in order on the task pool. The frame is decoded here,
// so that an ack is recognised by what will run (exempt from the rate
// limit within the connection's ack credit), not by a look at its bytes.
func (c *conn) onMessage(op byte, msg []byte) {
	var cmd command
	var cmdErr error
	if op == opText && utf8.Valid(msg) {
		cmd, cmdErr = decodeCommand(msg)
	}
	free := op == opText && cmdErr == nil && cmd.Type == "ack" && c.takeAckCredit()
	if !free && !c.allowFrame() {
		c.hub.m.frameIn("invalid")
		cfg := c.hub.cfg
		c.dec.stop()
		c.later(func() {
			c.hub.rateLog.Warn("websocket closed: client frames over the rate limit (4029)", "account", c.accountID, "key", c.keyID,
				"frames", cfg.RateFrames, "window", cfg.RateWindow)
			c.fail(closeRateLimited, fmt.Sprintf("rate limited: more than %d frames in %s", cfg.RateFrames, cfg.RateWindow))
		})
		return
	}
	switch {
	case op == opBinary:
		c.hub.m.frameIn("binary")
		c.later(func() { c.sendError("binary frames are not supported: send JSON text frames") })
	case !utf8.Valid(msg):
		c.hub.m.frameIn("invalid")
		c.dec.stop()
		c.later(func() { c.close(closeInvalidPayload, "text frame is not valid UTF-8") })
	default:
		c.later(func() { c.handleCommand(cmd, cmdErr) })
	}
}

// allowFrame counts a client data message against the rate limit (a fixed
// window per connection).
func (c *conn) allowFrame() bool {
	cfg := &c.hub.cfg
	now := time.Now().UnixNano()
	if now-c.rateStart >= int64(cfg.RateWindow) {
		c.rateStart, c.rateCount = now, 0
	}
	c.rateCount++
	return int(c.rateCount) <= cfg.RateFrames
}

// takeAckCredit uses one ack credit, if there is one.
func (c *conn) takeAckCredit() bool {
	for {
		n := c.ackCredit.Load()
		if n <= 0 {
			return false
		}
		if c.ackCredit.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closing
}
