package engine

import (
	"errors"
	"net"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"

	"github.com/mailwire/mailwire/internal/limits"
)

// edgeListener is what nbhttp's accept goroutine calls Accept on. A
// connection over the descriptor budget or the per-address cap is reset
// here, before nbio sees it (no dup, no poller registration, no parser,
// no log line per connection); descriptor exhaustion at accept is waited
// out with a backoff instead of nbhttp's loop retrying at once (a spin
// that logged ~260,000 lines a second).
type edgeListener struct {
	net.Listener
	s *Server
}

func (l *edgeListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if limits.AcceptRetry(err, &backoff) {
				l.s.acceptLog.Warn("cannot accept HTTP connections: out of descriptors; retrying", "error", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return nil, err
		}
		backoff = 0
		key := limits.ClientKey(c.RemoteAddr())
		// A full budget closes the oldest connection that has not sent a
		// request yet (edgeConns) before this one is refused.
		if ok, _ := l.s.deps.Limits.HTTP.AdmitEvicting(key, l.s.conns.evict); !ok {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // reset: no TIME_WAIT for a refused peer
			}
			_ = c.Close()
			continue
		}
		// nbhttp would convert it too; doing it here handles a failed dup
		// (out of descriptors) without a log line per connection.
		nbc, err := nbio.NBConn(c)
		if err != nil {
			l.s.deps.Limits.HTTP.Release(key)
			_ = c.Close()
			l.s.acceptLog.Warn("cannot take an HTTP connection", "error", err)
			continue
		}
		return nbc, nil
	}
}

// onOpen is nbio's open callback, run while nbio registers a connection
// with its poller (after nbhttp set its parser as the session, before the
// socket is polled): the request gate goes in front of nbhttp's processor
// and the first request's deadline (HeadTimeout) starts.
func (s *Server) onOpen(c *nbio.Conn) {
	// Released last: what is set up here happens before the poller's
	// first read of the connection (onData acquires it).
	defer s.handoff.Add(1)
	p, ok := c.Session().(*nbhttp.Parser)
	if !ok {
		return
	}
	g := &limitProcessor{Processor: p.Processor, s: s, parser: p}
	g.edge = s.conns.opened(c, limits.ClientKey(c.RemoteAddr()))
	g.endJob = g.ended
	p.Processor = g
	g.firstHead = time.AfterFunc(s.cfg.HeadTimeout, func() {
		if !g.headSeen.Load() {
			s.m.headTimeouts.Inc()
			_ = c.Close()
		}
	})
}

// onClose is nbhttp's close callback for every connection the listener
// returned.
func (s *Server) onClose(c net.Conn, _ error) {
	nbc := nbioConn(c)
	s.conns.closed(nbc, limits.ClientKey(c.RemoteAddr()))
	if nbc != nil {
		if p, ok := nbc.Session().(*nbhttp.Parser); ok {
			if g, ok := p.Processor.(*limitProcessor); ok {
				g.closed()
			}
		}
	}
}
