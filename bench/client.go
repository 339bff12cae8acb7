package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/lesismal/nbio"
)

// ClientSpec is one logical subscriber: the API key it authenticates
// with, the subscription it asks for, and the inboxes (by plan index)
// whose events it must therefore receive. A subscriber keeps its spec and
// its loss/duplicate record across reconnections.
type ClientSpec struct {
	Key      string   `json:"k"`
	InboxIDs []string `json:"i,omitempty"` // subscribe inbox_ids; empty: all inboxes
	Types    []string `json:"t,omitempty"` // subscribe event_types; empty: all types
	Expect   []int32  `json:"e"`           // plan indices of the inboxes it should hear from
}

// PoolConfig configures a Pool. Zero fields take the default named.
type PoolConfig struct {
	// URL is the server's base URL (http://host:port); the pool dials
	// host:port and upgrades GET /v1/ws. Required.
	URL string `json:"url"`
	// MoreURLs are other nodes of the same cluster: connections are
	// spread over URL and these in turn (reconnections move on too).
	MoreURLs []string `json:"more_urls,omitempty"`
	// Sources are the local addresses connections are made from, in
	// turn (each 127.x.y.z offers ~28k ports). Default 127.0.0.1.
	Sources []netip.Addr `json:"sources,omitempty"`
	// Rate is new connections per second, reconnections included.
	// 0: as fast as the dialers go.
	Rate float64 `json:"rate,omitempty"`
	// Dialers is the number of goroutines running connect(2) (the only
	// blocking step; everything after it runs on nbio's pollers).
	// Default 4.
	Dialers int `json:"dialers,omitempty"`
	// Pollers is the number of nbio poller goroutines. Default 1.
	Pollers int `json:"pollers,omitempty"`
	// Run is the run id; events whose marker names another run are
	// counted as foreign.
	Run uint32 `json:"run"`
	// Abrupt makes client-initiated closes drop the socket with a RST
	// (SO_LINGER 0) instead of a close handshake (code 1000).
	Abrupt bool `json:"abrupt,omitempty"`
	// Validate decodes every event payload as JSON and counts those that
	// do not decode (tests; costs CPU).
	Validate bool `json:"validate,omitempty"`
	// DialTimeout bounds connect(2). Default 10s.
	DialTimeout time.Duration `json:"dial_timeout,omitempty"`
}

func (c *PoolConfig) setDefaults() {
	if len(c.Sources) == 0 {
		c.Sources = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	if c.Dialers <= 0 {
		c.Dialers = 4
	}
	if c.Pollers <= 0 {
		c.Pollers = 1
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
}

// Pool holds many WebSocket subscribers without a goroutine per
// connection: a few dialer goroutines run connect(2) at the configured
// rate and hand each socket to an nbio engine, whose poller goroutines
// run the handshake, the subscription, ping answers and the accounting of
// events as callbacks. Per connection the pool keeps one small session; a
// read buffer exists only while a frame is split across reads.
//
// Concurrency: Pool's methods are safe for concurrent use, except Add,
// which is called once before anything else. A session's parse state is
// touched only by the poller that owns its socket; a subscriber's record
// (shared by its successive sessions) is guarded by the subscriber's
// mutex; counters are atomics.
type Pool struct {
	cfg     PoolConfig
	addrs   []string // host:port dialed in turn, and the Host header
	node    atomic.Uint32
	eng     *nbio.Engine
	clients []*client
	queue   chan *client // subscribers waiting for a dial; each at most once

	lat      *recorder // end-to-end latency of fresh events sent within the window, from the intended send time
	latSent  *recorder // the same from the actual send time (differs when the generator lags)
	connLat  *recorder // dial start → "subscribed"
	winFrom  atomic.Int64
	winTo    atomic.Int64
	nextDial atomic.Int64 // pacing: Unix ns of the next free dial slot
	src      atomic.Uint32

	n counters

	mu struct {
		sync.Mutex
		errs   map[string]int64 // failures and error frames, by kind
		closes map[string]int64 // close frames received, by code
	}

	stop   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup // dialers and behaviours
	behave struct {
		sync.Mutex
		stop chan struct{} // nil: no behaviour running
	}
}

// counters are the pool's running totals; PoolStats documents them.
type counters struct {
	queued, settled, dials, dialErrors, subscribed, failed     atomic.Int64
	sockets, reconnects, clientCloses, serverCloses            atomic.Int64
	events, unique, duplicates, uncertain, unexpected, foreign atomic.Int64
	unparsed, invalid, pings, bytesIn                          atomic.Int64
}

// client is one logical subscriber.
type client struct {
	p    *Pool
	spec *ClientSpec
	// replay: send last_event_id with the next subscribe.
	replay atomic.Bool

	mu struct {
		sync.Mutex
		cur     *session // the current socket; nil while none
		tr      tracker
		lastID  [40]byte // the greatest event_id received (ULIDs sort by time)
		lastLen int
	}
}

// Session states.
const (
	stHandshake   int32 = iota // upgrade sent, waiting for 101
	stSubscribing              // subscribe sent, waiting for "subscribed"
	stSubscribed
	stClosing // closed by us, by a close frame, or failed
)

// session is one socket of a subscriber. rbuf, frag and fragOp belong to
// the socket's poller goroutine.
type session struct {
	c         *client
	nbc       *nbio.Conn
	dialStart int64
	state     atomic.Int32
	settled   atomic.Bool  // the connect attempt has an outcome
	byUs      atomic.Bool  // we started the close
	lastPing  atomic.Int64 // Unix ns of the last ping answered
	nPings    atomic.Int32
	rbuf      []byte
	frag      []byte
	fragOp    byte
}

// NewPool starts a pool's engine; Add gives it subscribers.
func NewPool(cfg PoolConfig) (*Pool, error) {
	cfg.setDefaults()
	var addrs []string
	for _, raw := range append([]string{cfg.URL}, cfg.MoreURLs...) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("cannot use server URL %q: want http://host:port", raw)
		}
		addrs = append(addrs, u.Host)
	}
	p := &Pool{
		cfg:     cfg,
		addrs:   addrs,
		lat:     newRecorder(2),
		latSent: newRecorder(2),
		connLat: newRecorder(2),
		stop:    make(chan struct{}),
	}
	p.winTo.Store(1<<63 - 1)
	p.mu.errs = map[string]int64{}
	p.mu.closes = map[string]int64{}
	p.eng = nbio.NewEngine(nbio.Config{
		Name:    "mailwire-bench",
		NPoller: cfg.Pollers,
		// One read buffer per poller: a read takes many frames at once.
		ReadBufferSize: 64 << 10,
	})
	p.eng.OnOpen(func(*nbio.Conn) { p.n.sockets.Add(1) })
	p.eng.OnData(p.onData)
	p.eng.OnClose(p.onClose)
	if err := p.eng.Start(); err != nil {
		return nil, fmt.Errorf("cannot start the client engine: %w", err)
	}
	return p, nil
}

// Add registers the subscribers and queues them for dialing; it returns
// at once (Wait reports when every one is subscribed or failed). It is
// called once.
func (p *Pool) Add(specs []ClientSpec) {
	if p.queue != nil {
		panic("BUG: Pool.Add called twice")
	}
	p.clients = make([]*client, len(specs))
	p.queue = make(chan *client, len(specs))
	for i := range specs {
		c := &client{p: p, spec: &specs[i]}
		c.mu.tr = newTracker(specs[i].Expect)
		p.clients[i] = c
		p.n.queued.Add(1)
		p.queue <- c
	}
	for i := 0; i < p.cfg.Dialers; i++ {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.dialLoop() }()
	}
}

// Wait blocks until every queued connect attempt has an outcome
// (subscribed or failed), or ctx ends; it returns the number subscribed.
func (p *Pool) Wait(ctx context.Context) (int, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for p.n.settled.Load() < p.n.queued.Load() {
		select {
		case <-ctx.Done():
			return int(p.n.subscribed.Load()), ctx.Err()
		case <-t.C:
		}
	}
	return int(p.n.subscribed.Load()), nil
}

// SetWindow limits latency recording to events sent in [from, to) (Unix
// ns): warm-up and drain stay out of the figures.
func (p *Pool) SetWindow(from, to int64) {
	p.winFrom.Store(from)
	p.winTo.Store(to)
}

// Close stops dialing and behaviours and closes every connection. It is
// idempotent.
func (p *Pool) Close() {
	if p.closed.Swap(true) {
		return
	}
	p.StopBehaviour()
	close(p.stop)
	p.wg.Wait()
	p.eng.Stop()
}

func (p *Pool) dialLoop() {
	for {
		select {
		case <-p.stop:
			return
		case c := <-p.queue:
			if !p.pace() {
				return
			}
			p.dial(c)
		}
	}
}

// pace waits for the next dial slot at the configured rate; false when
// the pool is closing.
func (p *Pool) pace() bool {
	if p.cfg.Rate <= 0 {
		return true
	}
	step := int64(float64(time.Second) / p.cfg.Rate)
	now := time.Now().UnixNano()
	var slot int64
	for {
		next := p.nextDial.Load()
		// An idle pool does not bank slots: at most one step of burst.
		slot = max(next, now-step)
		if p.nextDial.CompareAndSwap(next, slot+step) {
			break
		}
	}
	if d := time.Duration(slot - now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.stop:
			return false
		case <-t.C:
		}
	}
	return true
}

func (p *Pool) dial(c *client) {
	src := p.cfg.Sources[int(p.src.Add(1))%len(p.cfg.Sources)]
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: p.cfg.DialTimeout}
	addr := p.addrs[int(p.node.Add(1))%len(p.addrs)]
	start := time.Now().UnixNano()
	p.n.dials.Add(1)
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		p.n.dialErrors.Add(1)
		p.attemptFailed("dial: " + errText(err))
		return
	}
	// NBConn dups the descriptor into an nbio connection and closes the
	// original; the session is attached before nbio can call back.
	nc, err := nbio.NBConn(conn)
	if err != nil {
		_ = conn.Close()
		p.n.dialErrors.Add(1)
		p.attemptFailed("dial: " + errText(err))
		return
	}
	s := &session{c: c, nbc: nc, dialStart: start}
	nc.SetSession(s)
	c.mu.Lock()
	c.mu.cur = s
	c.mu.Unlock()
	if _, err := p.eng.AddConn(nc); err != nil {
		// nbio closed it; when it had registered it, onClose settles it.
		p.settle(s, false, "dial: "+errText(err))
		return
	}
	var buf [512]byte
	if _, err := nc.Write(appendHandshake(buf[:0], addr, "/v1/ws", c.spec.Key)); err != nil {
		p.settle(s, false, "write: "+errText(err))
		_ = nc.Close()
	}
}

// attemptFailed settles an attempt that never got a session.
func (p *Pool) attemptFailed(reason string) {
	p.n.settled.Add(1)
	p.n.failed.Add(1)
	p.countErr(reason)
}

// settle records the outcome of a session's connect attempt, once.
func (p *Pool) settle(s *session, ok bool, reason string) {
	if !s.settled.CompareAndSwap(false, true) {
		return
	}
	if ok {
		p.n.subscribed.Add(1)
		p.connLat.record(s.nbc.Hash(), (time.Now().UnixNano()-s.dialStart)/1000)
	} else {
		p.n.failed.Add(1)
		p.countErr(reason)
	}
	p.n.settled.Add(1)
}

// leaveSubscribed moves a session out of the subscribed state (once).
func (p *Pool) leaveSubscribed(s *session) {
	for {
		st := s.state.Load()
		if st == stClosing {
			return
		}
		if s.state.CompareAndSwap(st, stClosing) {
			if st == stSubscribed {
				p.n.subscribed.Add(-1)
			}
			return
		}
	}
}

func (p *Pool) countErr(kind string) {
	p.mu.Lock()
	p.mu.errs[kind]++
	p.mu.Unlock()
}

// errText shortens a network error to its cause ("connection refused").
func errText(err error) string {
	var se syscall.Errno
	if errors.As(err, &se) {
		return se.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// onData is nbio's read callback (on the socket's poller goroutine).
func (p *Pool) onData(nc *nbio.Conn, data []byte) {
	s, _ := nc.Session().(*session)
	if s == nil {
		return
	}
	p.n.bytesIn.Add(int64(len(data)))
	now := time.Now().UnixNano() // every frame of one read arrived together
	buf := data
	if len(s.rbuf) > 0 {
		s.rbuf = append(s.rbuf, data...)
		buf = s.rbuf
	}
	if s.state.Load() == stHandshake {
		n, err := parseHandshake(buf)
		if err == errNeedMore {
			s.keep(buf)
			return
		}
		if err != nil {
			reason := "handshake: " + err.Error()
			var he *handshakeError
			if errors.As(err, &he) {
				reason = "upgrade refused: HTTP " + strconv.Itoa(he.status)
			}
			p.settle(s, false, reason)
			s.state.Store(stClosing)
			s.rbuf = nil
			_ = nc.Close()
			return
		}
		buf = buf[n:]
		s.state.CompareAndSwap(stHandshake, stSubscribing)
		p.sendSubscribe(s)
	}
	for len(buf) > 0 {
		f, err := parseFrame(buf)
		if err == errNeedMore {
			break
		}
		if err != nil {
			p.countErr("protocol: " + err.Error())
			p.settle(s, false, "protocol: "+err.Error())
			p.leaveSubscribed(s)
			s.rbuf = nil
			_ = nc.Close()
			return
		}
		p.onFrame(s, &f, now)
		buf = buf[f.size:]
	}
	s.keep(buf)
}

// keep holds the unparsed tail of the input for the next read.
func (s *session) keep(tail []byte) {
	switch {
	case len(tail) == 0:
		s.rbuf = nil
	case len(s.rbuf) > 0:
		// tail lies inside rbuf: move it to the front.
		n := copy(s.rbuf, tail)
		s.rbuf = s.rbuf[:n]
	default:
		s.rbuf = append(make([]byte, 0, len(tail)), tail...)
	}
}

// mask is the masking key of the frames the pool sends. RFC 6455 wants
// it unpredictable, against cache poisoning by proxies; there is no proxy
// on loopback, and the server unmasks whatever it is.
var mask = [4]byte{0x6d, 0x77, 0x62, 0x31}

func (p *Pool) sendSubscribe(s *session) {
	c := s.c
	msg := struct {
		Type        string   `json:"type"`
		InboxIDs    []string `json:"inbox_ids,omitempty"`
		EventTypes  []string `json:"event_types,omitempty"`
		LastEventID string   `json:"last_event_id,omitempty"`
	}{Type: "subscribe", InboxIDs: c.spec.InboxIDs, EventTypes: c.spec.Types}
	if c.replay.Load() {
		c.mu.Lock()
		msg.LastEventID = string(c.mu.lastID[:c.mu.lastLen])
		c.mu.Unlock()
	}
	b, _ := json.Marshal(msg)
	_, _ = s.nbc.Write(appendClientFrame(nil, opText, b, mask))
}

func (p *Pool) onFrame(s *session, f *frame, now int64) {
	switch f.op {
	case opPing:
		p.n.pings.Add(1)
		s.lastPing.Store(now)
		s.nPings.Add(1)
		var buf [256]byte
		_, _ = s.nbc.Write(appendClientFrame(buf[:0], opPong, f.payload, mask))
	case opPong:
	case opClose:
		code := closeCode(f.payload)
		p.mu.Lock()
		p.mu.closes[strconv.Itoa(code)]++
		p.mu.Unlock()
		p.settle(s, false, "closed before subscribed: "+strconv.Itoa(code))
		if !s.byUs.Load() {
			p.n.serverCloses.Add(1)
			// Echo the code; the server then drops the socket.
			var buf [16]byte
			echo := f.payload[:min(2, len(f.payload))]
			_, _ = s.nbc.Write(appendClientFrame(buf[:0], opClose, echo, mask))
		}
		p.leaveSubscribed(s)
	case opText, opBinary:
		if !f.fin {
			s.fragOp = f.op
			s.frag = append(s.frag[:0], f.payload...)
			return
		}
		p.onMessage(s, f.payload, now)
	case opContinuation:
		s.frag = append(s.frag, f.payload...)
		if f.fin {
			msg := s.frag
			s.frag, s.fragOp = nil, 0
			p.onMessage(s, msg, now)
		}
	}
}

var controlPrefix = []byte(`{"type":"`)

func (p *Pool) onMessage(s *session, msg []byte, now int64) {
	if !bytes.HasPrefix(msg, controlPrefix) {
		p.onEvent(s, msg, now)
		return
	}
	typ := msg[len(controlPrefix):]
	switch {
	case bytes.HasPrefix(typ, []byte(`subscribed"`)):
		if s.state.CompareAndSwap(stSubscribing, stSubscribed) {
			p.settle(s, true, "")
		}
	case bytes.HasPrefix(typ, []byte(`error"`)):
		var e struct{ Message string }
		_ = json.Unmarshal(msg, &e)
		kind := e.Message
		if i := bytes.IndexAny([]byte(kind), ":;("); i > 0 {
			kind = kind[:i]
		}
		p.countErr("error frame: " + kind)
	}
}

func (p *Pool) onEvent(s *session, payload []byte, now int64) {
	p.n.events.Add(1)
	if p.cfg.Validate && !json.Valid(payload) {
		p.n.invalid.Add(1)
	}
	m, ok := findMarker(payload)
	if !ok {
		p.n.unparsed.Add(1)
		return
	}
	if m.run != p.cfg.Run {
		p.n.foreign.Add(1)
		return
	}
	id := findEventID(payload)
	c := s.c
	c.mu.Lock()
	v, unexpected := c.mu.tr.add(m.inbox, m.seq)
	if len(id) > 0 && len(id) <= len(c.mu.lastID) && bytes.Compare(id, c.mu.lastID[:c.mu.lastLen]) > 0 {
		c.mu.lastLen = copy(c.mu.lastID[:], id)
	}
	c.mu.Unlock()
	switch {
	case unexpected:
		p.n.unexpected.Add(1)
	case v == seqDuplicate:
		p.n.duplicates.Add(1)
	case v == seqUncertain:
		p.n.uncertain.Add(1)
	default:
		p.n.unique.Add(1)
		if m.sent >= p.winFrom.Load() && m.sent < p.winTo.Load() {
			us := (now - m.sent) / 1000
			p.lat.record(s.nbc.Hash(), us)
			p.latSent.record(s.nbc.Hash(), us-m.lag)
		}
	}
}

// onClose is nbio's close callback (after the last onData of the socket).
func (p *Pool) onClose(nc *nbio.Conn, err error) {
	p.n.sockets.Add(-1)
	s, _ := nc.Session().(*session)
	if s == nil {
		return
	}
	reason := "closed before subscribed"
	if err != nil {
		reason += ": " + errText(err)
	}
	p.settle(s, false, reason)
	if s.state.Load() == stSubscribed && !s.byUs.Load() && !p.closed.Load() {
		p.n.serverCloses.Add(1) // dropped without a close frame
		// The age and the last ping tell a liveness verdict (no pong for
		// a while) from a timer that fired whatever the traffic.
		now := time.Now().UnixNano()
		last := "no ping answered"
		if lp := s.lastPing.Load(); lp > 0 {
			last = fmt.Sprintf("last ping answered %.0fs before", float64(now-lp)/1e9)
		}
		p.countErr(fmt.Sprintf("dropped by the server without a close frame at age %.0fs (%s)", float64(now-s.dialStart)/1e9, last))
	}
	p.leaveSubscribed(s)
	c := s.c
	c.mu.Lock()
	if c.mu.cur == s {
		c.mu.cur = nil
	}
	c.mu.Unlock()
}

// closeClient closes c's socket (clean or abrupt, per the config) and
// reports whether it had a subscribed one. The socket stays c's current
// one until nbio reports it closed.
func (p *Pool) closeClient(c *client) bool {
	c.mu.Lock()
	s := c.mu.cur
	c.mu.Unlock()
	if s == nil || !s.state.CompareAndSwap(stSubscribed, stClosing) {
		return false
	}
	s.byUs.Store(true)
	p.n.subscribed.Add(-1)
	p.n.clientCloses.Add(1)
	if p.cfg.Abrupt {
		_ = s.nbc.SetLinger(1, 0)
		_ = s.nbc.Close()
	} else {
		var buf [16]byte
		_, _ = s.nbc.Write(appendClientFrame(buf[:0], opClose, []byte{0x03, 0xe8}, mask)) // 1000
	}
	return true
}

// requeue queues c for a new connection; replay asks the server for the
// events after the last one c received.
func (p *Pool) requeue(c *client, replay bool) {
	c.replay.Store(replay)
	p.n.queued.Add(1)
	p.n.reconnects.Add(1)
	select {
	case p.queue <- c:
	default:
		// Impossible: a subscriber is queued only while it has no socket.
		p.attemptFailed("BUG: dial queue full")
	}
}

// pickSubscribed returns up to k random subscribers with a subscribed
// socket.
func (p *Pool) pickSubscribed(k int) []*client {
	if k <= 0 || len(p.clients) == 0 {
		return nil
	}
	var out []*client
	start := rand.IntN(len(p.clients))
	stride := 1
	if len(p.clients) > 1 {
		// a stride coprime with the length visits every subscriber once
		for stride = 1 + rand.IntN(len(p.clients)); gcd(stride, len(p.clients)) != 1; stride++ {
		}
	}
	for i := 0; i < len(p.clients) && len(out) < k; i++ {
		c := p.clients[(start+i*stride)%len(p.clients)]
		c.mu.Lock()
		ok := c.mu.cur != nil && c.mu.cur.state.Load() == stSubscribed
		c.mu.Unlock()
		if ok {
			out = append(out, c)
		}
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Behaviour is what the pool does with its subscribers once connected,
// besides holding them.
type Behaviour struct {
	// Storm: every StormEvery, StormFraction of the subscribed
	// subscribers drop their socket at once and, StormPause later,
	// reconnect asking for replay (last_event_id).
	StormEvery    time.Duration `json:"storm_every,omitempty"`
	StormFraction float64       `json:"storm_fraction,omitempty"`
	StormPause    time.Duration `json:"storm_pause,omitempty"`
	// Churn: ChurnRate subscribers per second close and reconnect at
	// once (no replay), spread over 10 ticks a second.
	ChurnRate float64 `json:"churn_rate,omitempty"`
}

// StartBehaviour starts b (replacing a running one).
func (p *Pool) StartBehaviour(b Behaviour) {
	p.StopBehaviour()
	if p.closed.Load() {
		return
	}
	stop := make(chan struct{})
	p.behave.Lock()
	p.behave.stop = stop
	p.behave.Unlock()
	if b.StormEvery > 0 && b.StormFraction > 0 {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.storms(b, stop) }()
	}
	if b.ChurnRate > 0 {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.churn(b.ChurnRate, stop) }()
	}
}

// StopBehaviour stops storms and churn; subscribers closed by a storm
// whose pause has not ended are queued for reconnection at once.
func (p *Pool) StopBehaviour() {
	p.behave.Lock()
	if p.behave.stop != nil {
		close(p.behave.stop)
		p.behave.stop = nil
	}
	p.behave.Unlock()
}

func (p *Pool) storms(b Behaviour, stop chan struct{}) {
	t := time.NewTicker(b.StormEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-p.stop:
			return
		case <-t.C:
		}
		victims := p.pickSubscribed(int(b.StormFraction*float64(p.n.subscribed.Load()) + 0.5))
		var closed []*client
		for _, c := range victims {
			if p.closeClient(c) {
				closed = append(closed, c)
			}
		}
		pause := time.NewTimer(b.StormPause)
		select {
		case <-pause.C:
		case <-stop:
		case <-p.stop:
		}
		pause.Stop()
		for _, c := range closed {
			p.waitDetached(c)
			p.requeue(c, true)
		}
	}
}

// waitDetached waits (briefly) for c's old socket to be gone, so that a
// subscriber never holds two sockets.
func (p *Pool) waitDetached(c *client) {
	for i := 0; i < 200; i++ {
		c.mu.Lock()
		free := c.mu.cur == nil
		c.mu.Unlock()
		if free {
			return
		}
		time.Sleep(time.Millisecond) // bounded poll: the close is in flight
	}
}

func (p *Pool) churn(rate float64, stop chan struct{}) {
	const tick = 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	var credit float64
	for {
		select {
		case <-stop:
			return
		case <-p.stop:
			return
		case <-t.C:
		}
		credit += rate * tick.Seconds()
		k := int(credit)
		credit -= float64(k)
		for _, c := range p.pickSubscribed(k) {
			if p.closeClient(c) {
				p.requeue(c, false)
			}
		}
	}
}

// PoolStats is a snapshot of a pool's counters. Counts are since the
// pool started; gauges (Subscribed, Sockets) are current.
type PoolStats struct {
	Subscribers int64 `json:"subscribers"` // logical subscribers in the pool
	Queued      int64 `json:"queued"`      // connect attempts requested (first connections and reconnections)
	Settled     int64 `json:"settled"`     // attempts with an outcome
	Dials       int64 `json:"dials"`       // connect(2) calls
	DialErrors  int64 `json:"dial_errors"` // connect(2) failures
	Failed      int64 `json:"failed"`      // attempts that did not end subscribed
	Subscribed  int64 `json:"subscribed"`  // gauge: sockets with a confirmed subscription
	Sockets     int64 `json:"sockets"`     // gauge: open sockets
	Reconnects  int64 `json:"reconnects"`  // attempts after the first one of a subscriber
	// ClientCloses are closes the pool started (storms, churn);
	// ServerCloses are subscribed sockets the server closed or dropped.
	ClientCloses int64 `json:"client_closes"`
	ServerCloses int64 `json:"server_closes"`

	Events     int64 `json:"events"`     // event frames received
	Unique     int64 `json:"unique"`     // first arrivals of expected (inbox, seq)
	Duplicates int64 `json:"duplicates"` // repeated arrivals of an expected (inbox, seq)
	Uncertain  int64 `json:"uncertain"`  // arrivals below a written-off window (late or duplicate)
	Unexpected int64 `json:"unexpected"` // events of an inbox the subscriber did not subscribe to
	Foreign    int64 `json:"foreign"`    // events of another run
	Unparsed   int64 `json:"unparsed"`   // events without a marker
	Invalid    int64 `json:"invalid"`    // event payloads that are not JSON (Validate only)
	Pings      int64 `json:"pings"`      // server pings answered
	BytesIn    int64 `json:"bytes_in"`

	Errors map[string]int64 `json:"errors,omitempty"`
	Closes map[string]int64 `json:"closes,omitempty"`

	// Latency is end to end (intended send → frame received) for first
	// arrivals sent within the window, cumulative; LatencyInterval the
	// same since the previous snapshot; LatencySent is Latency from the
	// actual send time; Connect is dial start → "subscribed".
	Latency         *hdrhistogram.Histogram `json:"-"`
	LatencyInterval *hdrhistogram.Histogram `json:"-"`
	LatencySent     *hdrhistogram.Histogram `json:"-"`
	Connect         *hdrhistogram.Histogram `json:"-"`
}

// Stats returns a snapshot and starts a new latency interval.
func (p *Pool) Stats() PoolStats {
	n := &p.n
	st := PoolStats{
		Subscribers: int64(len(p.clients)),
		Queued:      n.queued.Load(), Settled: n.settled.Load(), Dials: n.dials.Load(), DialErrors: n.dialErrors.Load(),
		Failed: n.failed.Load(), Subscribed: n.subscribed.Load(), Sockets: n.sockets.Load(), Reconnects: n.reconnects.Load(),
		ClientCloses: n.clientCloses.Load(), ServerCloses: n.serverCloses.Load(),
		Events: n.events.Load(), Unique: n.unique.Load(), Duplicates: n.duplicates.Load(), Uncertain: n.uncertain.Load(),
		Unexpected: n.unexpected.Load(), Foreign: n.foreign.Load(), Unparsed: n.unparsed.Load(), Invalid: n.invalid.Load(),
		Pings: n.pings.Load(), BytesIn: n.bytesIn.Load(),
		Errors: map[string]int64{}, Closes: map[string]int64{},
	}
	p.mu.Lock()
	for k, v := range p.mu.errs {
		st.Errors[k] = v
	}
	for k, v := range p.mu.closes {
		st.Closes[k] = v
	}
	p.mu.Unlock()
	st.Latency, st.LatencyInterval = p.lat.snapshot()
	st.LatencySent, _ = p.latSent.snapshot()
	st.Connect, _ = p.connLat.snapshot()
	return st
}

// merge adds o's counts to st (combining pools).
func (st *PoolStats) merge(o *PoolStats) {
	st.Subscribers += o.Subscribers
	st.Queued += o.Queued
	st.Settled += o.Settled
	st.Dials += o.Dials
	st.DialErrors += o.DialErrors
	st.Failed += o.Failed
	st.Subscribed += o.Subscribed
	st.Sockets += o.Sockets
	st.Reconnects += o.Reconnects
	st.ClientCloses += o.ClientCloses
	st.ServerCloses += o.ServerCloses
	st.Events += o.Events
	st.Unique += o.Unique
	st.Duplicates += o.Duplicates
	st.Uncertain += o.Uncertain
	st.Unexpected += o.Unexpected
	st.Foreign += o.Foreign
	st.Unparsed += o.Unparsed
	st.Invalid += o.Invalid
	st.Pings += o.Pings
	st.BytesIn += o.BytesIn
	if st.Errors == nil {
		st.Errors = map[string]int64{}
	}
	if st.Closes == nil {
		st.Closes = map[string]int64{}
	}
	for k, v := range o.Errors {
		st.Errors[k] += v
	}
	for k, v := range o.Closes {
		st.Closes[k] += v
	}
	for _, h := range []struct{ dst, src **hdrhistogram.Histogram }{
		{&st.Latency, &o.Latency}, {&st.LatencyInterval, &o.LatencyInterval}, {&st.LatencySent, &o.LatencySent}, {&st.Connect, &o.Connect},
	} {
		if *h.src == nil {
			continue
		}
		if *h.dst == nil {
			*h.dst = newHist()
		}
		(*h.dst).Merge(*h.src)
	}
}
