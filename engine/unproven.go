package engine

import (
	clist "container/list"
	"net/netip"
	"sync"

	"github.com/lesismal/nbio"
)

// edgeConns tracks the HTTP connections the listener returned, so that
// each one's descriptor-budget slot is given back exactly once, and the
// ones that have not yet sent a complete first request head ("unproven")
// in the order they were accepted. When the budget is full, the accept
// path closes the oldest unproven connection to make room
// (limits.Gate.AdmitEvicting): sockets that never send a request cannot
// lock out clients that do; a connection is refused only when every slot
// is held by a connection that sent a request (or by SMTP).
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
}

type edgeConn struct {
	c        *nbio.Conn
	key      netip.Addr
	released bool           // its slot was given back (under edgeConns.mu)
	elem     *clist.Element // in unproven; nil once proven or gone
}

func (e *edgeConns) init(s *Server) {
	e.s = s
	e.byConn = map[*nbio.Conn]*edgeConn{}
	e.unproven.Init()
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

// closed is onClose: it gives the connection's slot back unless evict
// already did. A connection onOpen never saw is released by its key.
func (e *edgeConns) closed(c *nbio.Conn, key netip.Addr) {
	e.mu.Lock()
	ec := e.byConn[c]
	release := true
	if ec != nil {
		delete(e.byConn, c)
		if ec.elem != nil {
			e.unproven.Remove(ec.elem)
			ec.elem = nil
		}
		release = !ec.released
		ec.released = true
		key = ec.key
	}
	e.mu.Unlock()
	if release {
		e.s.deps.Limits.HTTP.Release(key)
	}
}

// evict closes the oldest unproven connection and gives its slot back; it
// reports false when there is none. Run on the accept goroutine only.
func (e *edgeConns) evict() bool {
	e.mu.Lock()
	front := e.unproven.Front()
	if front == nil {
		e.mu.Unlock()
		return false
	}
	ec := e.unproven.Remove(front).(*edgeConn)
	ec.elem = nil
	ec.released = true // onClose, which nbio runs later, must not release it again
	e.mu.Unlock()
	_ = ec.c.Close() // the descriptor is closed here, synchronously
	e.s.deps.Limits.HTTP.Evicted(ec.key)
	return true
}
