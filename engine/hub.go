package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailwire/mailwire/store"
	"github.com/mailwire/mailwire/subs"
)

const hubShards = 64

// hub is the registry of live WebSocket connections: the subscription
// index, per-account connection counts, and the heartbeat. It implements
// delivery.Pusher.
type hub struct {
	s   *Server
	idx *subs.Index[*wsConn]

	shards [hubShards]struct {
		mu    sync.Mutex
		conns map[*wsConn]struct{}
	}

	acct struct {
		sync.Mutex
		n map[string]int
	}

	open    atomic.Int64 // upgraded connections not yet closed by nbio
	stopCh  chan struct{}
	stopped sync.WaitGroup
	once    sync.Once

	matchPool sync.Pool // *[]*wsConn scratch for Push
}

func newHub(s *Server) *hub {
	h := &hub{s: s, idx: subs.New[*wsConn](), stopCh: make(chan struct{})}
	for i := range h.shards {
		h.shards[i].conns = make(map[*wsConn]struct{})
	}
	h.acct.n = make(map[string]int)
	h.matchPool.New = func() any { s := make([]*wsConn, 0, 64); return &s }
	m := s.cfg.Metrics
	m.NewGauge("mailwire_ws_connections", func() float64 { return float64(h.open.Load()) })
	m.NewGauge("mailwire_ws_subscriptions", func() float64 { return float64(h.idx.Len()) })
	m.NewGauge("mailwire_ws_pending_bytes", func() float64 { return float64(h.pendingBytes()) })
	return h
}

func (h *hub) opened(d int64) { h.open.Add(d) }

// register adds an authenticated connection; false when its account is at
// the connection cap.
func (h *hub) register(c *wsConn) bool {
	h.acct.Lock()
	if h.acct.n[c.accountID] >= h.s.cfg.WS.MaxConnsPerAccount {
		h.acct.Unlock()
		return false
	}
	h.acct.n[c.accountID]++
	h.acct.Unlock()
	sh := &h.shards[shardOf(c)]
	sh.mu.Lock()
	sh.conns[c] = struct{}{}
	sh.mu.Unlock()
	return true
}

func shardOf(c *wsConn) uint32 {
	// Connections are spread by their nbio fd (stable, dense).
	return uint32(c.nbc.Hash()) % hubShards
}

// detach removes a connection from the index and the registry. Callers
// set c.mu.closing first (so a racing subscribe cannot re-add it). It is
// idempotent.
func (h *hub) detach(c *wsConn) {
	if c.detached.Swap(true) {
		return
	}
	sh := &h.shards[shardOf(c)]
	sh.mu.Lock()
	_, registered := sh.conns[c]
	delete(sh.conns, c)
	sh.mu.Unlock()
	if !registered {
		return
	}
	h.idx.Remove(c.accountID, c)
	h.acct.Lock()
	if h.acct.n[c.accountID]--; h.acct.n[c.accountID] <= 0 {
		delete(h.acct.n, c.accountID)
	}
	h.acct.Unlock()
}

// each calls fn for every registered connection (outside the shard locks).
func (h *hub) each(fn func(*wsConn)) {
	var batch []*wsConn
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		for c := range sh.conns {
			batch = append(batch, c)
		}
		sh.mu.Unlock()
		for _, c := range batch {
			fn(c)
		}
	}
}

// Has implements delivery.Pusher.
func (h *hub) Has(accountID, inboxID, typ string) bool {
	return h.idx.Has(accountID, inboxID, typ)
}

// Push implements delivery.Pusher: one encoding, one write per matching
// connection.
func (h *hub) Push(ev *store.Event, attempt int, at time.Time) int {
	bp := h.matchPool.Get().(*[]*wsConn)
	conns := h.idx.Match((*bp)[:0], ev.AccountID, ev.InboxID, ev.Type)
	n := 0
	if len(conns) > 0 {
		frame := encodeEventFrame(ev, attempt, at)
		for _, c := range conns {
			if c.pushEvent(ev.ID, attempt, frame) {
				n++
			}
		}
		h.s.m.wsDelivered.Add(n)
		h.s.m.framesOut["event"].Add(n)
		h.s.m.wsBytesOut.Add(n * len(frame))
	}
	clear(conns)
	*bp = conns[:0]
	h.matchPool.Put(bp)
	return n
}

// closeAll closes every connection with code (shutdown: 1001).
func (h *hub) closeAll(code int, reason string) {
	h.each(func(c *wsConn) { c.closeWith(code, reason) })
}

// keyRevoked closes (4001) every connection authenticated with keyID and
// returns how many.
func (h *hub) keyRevoked(keyID string) int {
	n := 0
	h.each(func(c *wsConn) {
		if c.keyID == keyID {
			c.fail(closeUnauthorized, "unauthorized: API key revoked")
			n++
		}
	})
	return n
}

// inboxDeleted drops a deleted inbox from every subscription (PROTOCOL.md §4).
func (h *hub) inboxDeleted(accountID, inboxID string) {
	h.idx.RemoveInbox(accountID, inboxID)
}

func (h *hub) pendingBytes() int64 {
	var n int64
	h.each(func(c *wsConn) { n += c.pending.Load() })
	return n
}

// waitEmpty waits until every upgraded connection is gone, or ctx ends.
func (h *hub) waitEmpty(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.open.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *hub) start() {
	h.stopped.Add(1)
	go func() { defer h.stopped.Done(); h.heartbeat() }()
}

func (h *hub) stop() {
	h.once.Do(func() { close(h.stopCh) })
	h.stopped.Wait()
}

// heartbeat pings every connection each PingInterval and drops those
// whose pong is later than PongTimeout (PROTOCOL.md §8). One goroutine
// serves every connection (no per-connection timer). Each tick sweeps one
// of the 64 shards in turn, so a full sweep takes a quarter of the shorter
// of the two periods and the pings of connections opened together are
// spread over it instead of going out in one burst.
func (h *hub) heartbeat() {
	ws := h.s.cfg.WS
	sweep := min(ws.PingInterval, ws.PongTimeout) / 4
	tick := max(time.Millisecond, min(sweep/hubShards, heartbeatTickMax))
	t := time.NewTicker(tick)
	defer t.Stop()
	ping := appendFrame(nil, opPing, nil)
	var batch []*wsConn
	for shard := 0; ; shard = (shard + 1) % hubShards {
		select {
		case <-h.stopCh:
			return
		case <-t.C:
		}
		sh := &h.shards[shard]
		sh.mu.Lock()
		batch = batch[:0]
		for c := range sh.conns {
			batch = append(batch, c)
		}
		sh.mu.Unlock()
		now := time.Now().UnixNano()
		for _, c := range batch {
			if !c.keepaliveCleared && now-c.openedAt >= int64(keepaliveClearAge) {
				// nbhttp arms its keep-alive read deadline on the accept
				// goroutine right after handing the socket to the poller,
				// so it can land after the upgrade cleared it; liveness is
				// the heartbeat's job: clear it again once it is surely set.
				c.keepaliveCleared = true
				_ = c.nbc.SetReadDeadline(time.Time{})
			}
			if sent := c.pingSentAt.Load(); sent != 0 {
				if now-sent > int64(ws.PongTimeout) {
					c.dead()
				}
				continue
			}
			if now-c.lastPingAt.Load() >= int64(ws.PingInterval) {
				c.lastPingAt.Store(now)
				c.pingSentAt.Store(now)
				c.send(ping)
			}
		}
		clear(batch)
	}
}
