package ws

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/internal/limits"
	"github.com/mailwire/mailwire/store"
	"github.com/mailwire/mailwire/subs"
)

type pushOutcome = delivery.PushResult

// Hub is the registry of live WebSocket connections: the subscription
// index, per-account connection counts and the heartbeat. It implements
// delivery.Pusher.
type Hub struct {
	cfg     Config
	backend Backend
	m       *wsMetrics
	idx     *subs.Index[*conn]

	shards [hubShards]struct {
		mu    sync.Mutex
		conns map[*conn]struct{}
	}
	acct struct {
		sync.Mutex
		n map[string]int
	}

	open     atomic.Int64 // upgraded connections not yet closed by nbio
	draining atomic.Bool
	log      *slog.Logger
	slowLog  limits.RateLog // slow-consumer closes, at most one line per 5 s
	rateLog  limits.RateLog // 4029 closes, at most one line per 5 s
	stopCh   chan struct{}
	stopped  sync.WaitGroup
	once     sync.Once

	matchPool sync.Pool // *[]*conn scratch for Push
}

// New returns a Hub serving connections with backend. Start runs its
// heartbeat; Stop ends it.
func New(cfg Config, backend Backend) *Hub {
	cfg.setDefaults()
	h := &Hub{cfg: cfg, backend: backend, idx: subs.New[*conn](), stopCh: make(chan struct{}), log: cfg.Logger.With("component", "ws")}
	h.slowLog = limits.RateLog{Log: h.log, Every: 5 * time.Second}
	h.rateLog = limits.RateLog{Log: h.log, Every: 5 * time.Second}
	for i := range h.shards {
		h.shards[i].conns = make(map[*conn]struct{})
	}
	h.acct.n = make(map[string]int)
	h.matchPool.New = func() any { s := make([]*conn, 0, 64); return &s }
	h.m = newMetrics(cfg.Metrics, h)
	return h
}

// Open is the number of upgraded connections whose socket is not closed.
func (h *Hub) Open() int64 { return h.open.Load() }

// register adds an authenticated connection; false when its account is at
// the connection cap.
func (h *Hub) register(c *conn) bool {
	h.acct.Lock()
	if h.acct.n[c.accountID] >= h.cfg.MaxConnsPerAccount {
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

func shardOf(c *conn) uint32 { return uint32(c.nbc.Hash()) % hubShards }

// detach removes a connection from the index and the registry
// (idempotent). Callers have set c.mu.closing, so a racing subscribe
// cannot add it back.
func (h *Hub) detach(c *conn) {
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
func (h *Hub) each(fn func(*conn)) {
	var batch []*conn
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

// Push implements delivery.Pusher: the attempt's frame is encoded once and
// written to every matching connection. The result counts what the push
// itself did (PROTOCOL.md §6: "as measured by the same push that wrote
// it"). Frames held by connections in the middle of a subscribe decide the
// attempt only when no frame could be written at once: then Push reports
// later and done receives the result once every hold has ended.
func (h *Hub) Push(ev *store.Event, attempt int, at time.Time, done func(delivery.PushResult)) (delivery.PushResult, bool) {
	bp := h.matchPool.Get().(*[]*conn)
	conns := h.idx.Match((*bp)[:0], ev.AccountID, ev.InboxID, ev.Type)
	var res delivery.PushResult
	var tr *heldPush
	if len(conns) > 0 {
		frame := encodeEventFrame(ev, attempt, at)
		sent := 0
		for _, c := range conns {
			r, acking := c.pushEvent(ev.ID, attempt, frame, &tr, done)
			if r == pushGone {
				continue // closing: not an open matching connection (PROTOCOL.md §6)
			}
			res.Matched++
			if r == pushWritten || r == pushDeduped {
				res.Written++
				if acking {
					res.Acking++
				}
			}
			if r == pushWritten {
				sent++ // its ack credit was granted by pushEvent
			}
		}
		h.m.delivered.Add(sent)
		h.m.frameOutN("event", sent)
		h.m.bytesOut.Add(sent * len(frame))
	}
	clear(conns)
	*bp = conns[:0]
	h.matchPool.Put(bp)
	if tr == nil {
		return res, false
	}
	if res.Written > 0 {
		tr.void.Store(true) // decided now; the held frames are sent but report nothing
		tr.release()
		return res, false
	}
	tr.matched = res.Matched
	tr.release()
	return res, true
}

// heldPush gathers the fate of one push's frames held during subscribes.
// pending counts the held frames not yet resolved plus one reference held
// by Push until it has handed out every frame, so done runs exactly once,
// after the last resolution.
type heldPush struct {
	pending atomic.Int32
	written atomic.Int32
	acking  atomic.Int32
	void    atomic.Bool // the push was decided without the held frames
	matched int         // set by Push before its release
	done    func(pushOutcome)
}

func newHeldPush(done func(pushOutcome)) *heldPush {
	t := &heldPush{done: done}
	t.pending.Store(1)
	return t
}

// resolve reports one held frame: written to its connection or not.
func (t *heldPush) resolve(written, acking bool) {
	if written {
		t.written.Add(1)
		if acking {
			t.acking.Add(1)
		}
	}
	t.release()
}

func (t *heldPush) release() {
	if t.pending.Add(-1) == 0 && !t.void.Load() {
		t.done(pushOutcome{Matched: t.matched, Written: int(t.written.Load()), Acking: int(t.acking.Load())})
	}
}

// CloseAll closes every connection with code (shutdown: 1001).
func (h *Hub) CloseAll(code int, reason string) {
	h.each(func(c *conn) { c.close(code, reason) })
}

// KeyRevoked closes (4001) every connection authenticated with keyID and
// returns how many.
func (h *Hub) KeyRevoked(keyID string) int {
	n := 0
	h.each(func(c *conn) {
		if c.keyID == keyID {
			c.fail(closeUnauthorized, "unauthorized: API key revoked")
			n++
		}
	})
	return n
}

// InboxDeleted drops a deleted inbox from every subscription (PROTOCOL.md §4).
func (h *Hub) InboxDeleted(accountID, inboxID string) {
	h.idx.RemoveInbox(accountID, inboxID)
}

// OnWritten is nbio's written-bytes callback for WebSocket connections: it
// settles the unsent-bytes count. It reports whether c is one of ours.
func OnWritten(c *nbio.Conn, n int) bool {
	wc, ok := c.Session().(*conn)
	if ok {
		wc.pending.Add(-int64(n))
		wc.written.Add(int64(n))
	}
	return ok
}

func (h *Hub) pendingBytes() int64 {
	var n int64
	h.each(func(c *conn) { n += c.pending.Load() })
	return n
}

// WaitEmpty waits until every upgraded connection is gone, or ctx ends.
func (h *Hub) WaitEmpty(ctx context.Context) {
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

// Start runs the heartbeat.
func (h *Hub) Start() {
	h.stopped.Add(1)
	go func() { defer h.stopped.Done(); h.heartbeat() }()
}

// Stop ends the heartbeat (idempotent).
func (h *Hub) Stop() {
	h.once.Do(func() { close(h.stopCh) })
	h.stopped.Wait()
}

// heartbeat pings every connection each PingInterval and closes (1001)
// those whose pong is later than PongTimeout (PROTOCOL.md §8). One
// goroutine serves every connection (no per-connection timer). Each tick
// sweeps one of the 64 shards in turn, so a full sweep takes a quarter of
// the shorter of the two periods and the pings of connections opened
// together are spread over it instead of going out in one burst.
func (h *Hub) heartbeat() {
	cfg := h.cfg
	sweep := min(cfg.PingInterval, cfg.PongTimeout) / 4
	tick := max(time.Millisecond, min(sweep/hubShards, heartbeatTickMax))
	t := time.NewTicker(tick)
	defer t.Stop()
	ping := appendFrame(nil, opPing, nil)
	var batch []*conn
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
				if now-sent > int64(cfg.PongTimeout) {
					h.m.drops["pong_timeout"].Inc()
					c.close(closeGoingAway, "no pong within "+cfg.PongTimeout.String())
				}
				continue
			}
			if now-c.lastPingAt.Load() >= int64(cfg.PingInterval) {
				c.lastPingAt.Store(now)
				c.pingSentAt.Store(now)
				c.send(ping)
			}
		}
		clear(batch)
	}
}
