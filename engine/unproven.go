package engine

import (
	clist "container/list"
	"net/netip"
	"sync"

	"github.com/lesismal/nbio"

	"github.com/mailwire/mailwire/internal/limits"
)

// edgeConns tracks the HTTP connections the listener returned, so that
// each one's descriptor-budget slot is given back exactly once, and which
// of them a full budget may close to make room (limits.Gate.
// AdmitEvicting), in this order:
//
//  1. "unproven": connections that have not yet sent a complete first
//     request head, oldest first (sockets that never send a request);
//  2. "idle": kept-alive connections between requests — no request in
//     progress or being answered, the connection still nbhttp's (not a
//     WebSocket, not a held pull), its last answer handed to the kernel
//     whole — the longest idle first (sockets that sent one cheap request
//     and sit on their slot).
//
// A connection is refused only when every slot is held by a connection in
// the middle of a request, a WebSocket, a held pull, or SMTP. Closing an
// idle persistent connection is what HTTP allows a server at any time
// (RFC 9112 §9.6); a client whose next request crosses the close sees the
// connection end before any answer, so nothing was acknowledged.
//
// Requests are counted per connection (inflight): one starts at its
// method (limitProcessor.OnMethod, on the poller) and ends with a job
// queued after its handler (nbio runs a connection's jobs in order, so it
// runs once the handler and its response are done); a held pull that
// gives the connection back ends it when its answer is written. Both take
// mu, so a request that starts while the previous one ends is never
// listed idle.
//
// Safety with nbio: a connection enters in onOpen, which nbio runs on
// nbhttp's accept goroutine inside AddConn; evict runs on that same
// goroutine from Accept, so every connection it can pick has finished its
// poller registration. Closing it there is what the head deadline's
// timer already does from another goroutine (nbio.Conn.Close locks; the
// patched poller drops stale events of a reused fd).
type edgeConns struct {
	s *Server

	mu       sync.Mutex
	byConn   map[*nbio.Conn]*edgeConn
	unproven clist.List // of *edgeConn, oldest first
	idle     clist.List // of *edgeConn, longest idle first
}

type edgeConn struct {
	c        *nbio.Conn
	key      netip.Addr
	released bool           // its slot was given back (under edgeConns.mu)
	elem     *clist.Element // in unproven; nil once proven or gone
	// inflight counts requests started and not yet answered; idleElem is
	// the entry in idle (nil unless inflight is 0 and the connection is
	// nbhttp's between requests). Both under edgeConns.mu.
	inflight int
	idleElem *clist.Element
}

func (e *edgeConns) init(s *Server) {
	e.s = s
	e.byConn = map[*nbio.Conn]*edgeConn{}
	e.unproven.Init()
	e.idle.Init()
}

// opened records a connection the gate admitted (onOpen).
func (e *edgeConns) opened(c *nbio.Conn, key netip.Addr) *edgeConn {
	ec := &edgeConn{c: c, key: key}
	e.mu.Lock()
	e.byConn[c] = ec
	ec.elem = e.unproven.PushBack(ec)
	e.mu.Unlock()
	return ec
}

// proven is called when the connection's first request head is complete.
func (e *edgeConns) proven(ec *edgeConn) {
	if ec == nil {
		return
	}
	e.mu.Lock()
	if ec.elem != nil {
		e.unproven.Remove(ec.elem)
		ec.elem = nil
	}
	e.mu.Unlock()
}

// begin is called when a request starts on the connection (its method
// was read): it is no longer idle.
func (e *edgeConns) begin(ec *edgeConn) {
	if ec == nil {
		return
	}
	e.mu.Lock()
	ec.inflight++
	if ec.idleElem != nil {
		e.idle.Remove(ec.idleElem)
		ec.idleElem = nil
	}
	e.mu.Unlock()
}

// end is called when a request was answered (a job after its handler).
// keptAlive reports that the connection is nbhttp's again, between
// requests (not upgraded, not hijacked by a held pull): with no other
// request in progress it becomes idle.
func (e *edgeConns) end(ec *edgeConn, keptAlive bool) {
	if ec == nil {
		return
	}
	e.mu.Lock()
	if ec.inflight > 0 {
		ec.inflight--
	}
	e.markIdleLocked(ec, keptAlive)
	e.mu.Unlock()
}

// rested is called when a held pull gave the connection back to nbhttp
// after its answer (its request ended with end(…, false) when the
// handler hijacked it).
func (e *edgeConns) rested(ec *edgeConn) {
	if ec == nil {
		return
	}
	e.mu.Lock()
	e.markIdleLocked(ec, true)
	e.mu.Unlock()
}

func (e *edgeConns) markIdleLocked(ec *edgeConn, keptAlive bool) {
	if keptAlive && ec.inflight == 0 && ec.idleElem == nil && !ec.released && e.byConn[ec.c] == ec {
		ec.idleElem = e.idle.PushBack(ec)
	}
}

// closed is onClose: it gives the connection's slot back unless evict
// already did. A connection onOpen never saw is released by its key.
func (e *edgeConns) closed(c *nbio.Conn, key netip.Addr) {
	e.mu.Lock()
	ec := e.byConn[c]
	release := true
	if ec != nil {
		delete(e.byConn, c)
		e.unlistLocked(ec)
		release = !ec.released
		ec.released = true
		key = ec.key
	}
	e.mu.Unlock()
	if release {
		e.s.deps.Limits.HTTP.Release(key)
	}
}

func (e *edgeConns) unlistLocked(ec *edgeConn) {
	if ec.elem != nil {
		e.unproven.Remove(ec.elem)
		ec.elem = nil
	}
	if ec.idleElem != nil {
		e.idle.Remove(ec.idleElem)
		ec.idleElem = nil
	}
}

// evict closes the oldest unproven connection, or else the longest idle
// one whose last answer has gone out whole (nbio's Close drops bytes
// still queued: a large answer to a slow reader stays until it is sent),
// and gives its slot back; it reports false when there is none. Run on
// the accept goroutine only.
//
// The connection is closed with mu held: a request whose method the
// poller reads meanwhile waits in begin, then finds the connection
// closed, so its handler never runs (nbio refuses jobs of a closed
// connection) — a request read but not handled is dropped unanswered,
// which is what RFC 9112 §9.6 allows; one handled and unanswered would
// not be. (nbio's Close takes only the connection's own lock and runs
// the close callback asynchronously: nothing under it takes mu.)
func (e *edgeConns) evict() bool {
	e.mu.Lock()
	reason := limits.EvictedUnproven
	front := e.unproven.Front()
	if front == nil {
		reason = limits.EvictedIdle
		front = e.idle.Front()
		for front != nil && front.Value.(*edgeConn).c.WritePending() {
			front = front.Next()
		}
	}
	if front == nil {
		e.mu.Unlock()
		return false
	}
	ec := front.Value.(*edgeConn)
	e.unlistLocked(ec)
	ec.released = true // onClose, which nbio runs later, must not release it again
	_ = ec.c.Close()   // the descriptor is closed here, synchronously
	e.mu.Unlock()
	e.s.deps.Limits.HTTP.Evicted(ec.key, reason)
	return true
}

// refused is called when the server answered a request it will not
// serve and is closing the connection (limitProcessor.answer): it is
// never idle again, so its lingering close is not cut short.
func (e *edgeConns) refused(ec *edgeConn) {
	if ec == nil {
		return
	}
	e.mu.Lock()
	ec.inflight++ // never matched by an end: the connection is going
	if ec.idleElem != nil {
		e.idle.Remove(ec.idleElem)
		ec.idleElem = nil
	}
	e.mu.Unlock()
}
