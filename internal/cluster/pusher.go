// Package cluster makes the nodes of a mailwire cluster push as one: each
// node writes the events it reads from the shared log to its own sockets
// (the fan-out, in log order), and the node that owns an attempt learns
// from every live node what was written, so the attempt is recorded
// truthfully ("written to at least one matching connection somewhere",
// PROTOCOL.md §6) or falls back to the webhook.
//
// The first attempt of an event (when the schedule's first delay is 0) is
// the fan-out itself: the owner asks every node what it wrote of the
// event (subject mw.rpc.report); each answers once its fan-out has passed
// the event's log position. Later attempts are pushed on request
// (mw.rpc.push) by every node to its sockets. A node that does not answer
// within the bound counts as having written nothing (it died, or lost
// NATS: its sockets are gone or going).
package cluster

import (
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/internal/promtext"
	"github.com/mailwire/mailwire/store"
	"github.com/mailwire/mailwire/store/jsstore"
)

// Subjects and bounds of the nodes' requests to each other.
const (
	subjReport = "mw.rpc.report"
	subjPush   = "mw.rpc.push"
	// answerWait bounds how long the owner waits for the other nodes'
	// answers, and a node for its fan-out to reach an event.
	answerWait = 5 * time.Second
	// keepResults is how long a node remembers what its fan-out wrote of
	// an event (the owner asks within answerWait; a redelivered first
	// lease after a node died asks up to the consumers' ack wait later).
	keepResults = 2 * time.Minute
)

// Config configures a Pusher.
type Config struct {
	// FirstDelay is the retry schedule's first delay: when 0 the fan-out
	// is the first attempt; otherwise every attempt is pushed on request.
	FirstDelay time.Duration
	Metrics    *metrics.Set
	Logger     *slog.Logger
}

// Pusher is the cluster's delivery.Pusher.
type Pusher struct {
	st    *jsstore.Store
	local delivery.Pusher
	cfg   Config
	log   *slog.Logger
	nc    *nats.Conn
	self  string

	mu      sync.Mutex
	results map[string]*result // event id -> what the fan-out wrote here
	pending map[uint64]*gather // request id -> answers being gathered
	nextID  atomic.Uint64
	inbox   string
	subs    []*nats.Subscription
	stop    chan struct{}
	wg      sync.WaitGroup

	m struct {
		timeouts *metrics.Counter
		requests *metrics.Counter
		answers  *metrics.Counter
	}
}

// result is what one push did on this node; done once known (a push held
// behind a subscribe is known later).
type result struct {
	at   time.Time
	res  delivery.PushResult
	done chan struct{}
}

// gather collects the answers to one request.
type gather struct {
	id      uint64
	want    map[string]bool // remote nodes not heard from
	localIn bool            // this node's own part is in
	sum     delivery.PushResult
	done    func(delivery.PushResult)
	timer   *time.Timer
	fired   bool
}

type request struct {
	ID      uint64 `json:"id"`
	From    string `json:"from"`
	Event   string `json:"e"`
	Seq     uint64 `json:"s,omitempty"`
	Account string `json:"a,omitempty"`
	Inbox   string `json:"i,omitempty"`
	Type    string `json:"t,omitempty"`
	Message string `json:"m,omitempty"`
	Attempt int    `json:"n,omitempty"`
	AtMs    int64  `json:"at,omitempty"`
	Head    []byte `json:"h,omitempty"`
	Tail    []byte `json:"tl,omitempty"`
}

type answer struct {
	ID      uint64 `json:"id"`
	Node    string `json:"node"`
	Matched int    `json:"m"`
	Written int    `json:"w"`
	Acking  int    `json:"k"`
	AtMs    int64  `json:"at,omitempty"`
}

// New returns the cluster pusher of this node, pushing to its sockets
// through local (the engine's hub).
func New(st *jsstore.Store, local delivery.Pusher, cfg Config) *Pusher {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	p := &Pusher{st: st, local: local, cfg: cfg, log: cfg.Logger.With("component", "cluster"), nc: st.Conn(),
		self: st.NodeKey(), results: map[string]*result{}, pending: map[uint64]*gather{}, stop: make(chan struct{})}
	p.m.timeouts = cfg.Metrics.NewCounter(promtext.Describe("mailwire_cluster_answer_timeouts_total", "Push requests to other nodes that were not all answered in time."))
	p.m.requests = cfg.Metrics.NewCounter(promtext.Describe("mailwire_cluster_requests_total", "Push requests this node sent to the other nodes."))
	p.m.answers = cfg.Metrics.NewCounter(promtext.Describe("mailwire_cluster_answers_total", "Answers to push requests this node received from the other nodes."))
	cfg.Metrics.NewGauge(promtext.Describe("mailwire_cluster_nodes", "Live nodes of the cluster, as this node sees them."), func() float64 { return float64(len(st.LiveNodes())) })
	return p
}

// Start subscribes to the other nodes' requests and starts the fan-out.
func (p *Pusher) Start() error {
	p.inbox = nats.NewInbox()
	for subj, fn := range map[string]nats.MsgHandler{
		subjReport:     p.onReport,
		subjPush:       p.onPush,
		p.inbox + ".*": p.onAnswer,
	} {
		sub, err := p.nc.Subscribe(subj, fn)
		if err != nil {
			p.Stop()
			return err
		}
		p.subs = append(p.subs, sub)
	}
	if err := p.nc.Flush(); err != nil {
		p.Stop()
		return err
	}
	if p.cfg.FirstDelay == 0 {
		p.st.OnStored(p.fanOut)
	}
	p.wg.Add(1)
	go p.expire()
	return nil
}

// Stop ends the subscriptions; gathers in flight finish by their timers.
func (p *Pusher) Stop() {
	for _, s := range p.subs {
		_ = s.Unsubscribe()
	}
	p.subs = nil
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

func (p *Pusher) expire() {
	defer p.wg.Done()
	t := time.NewTicker(keepResults / 4)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			for id, r := range p.results {
				if now.Sub(r.at) > keepResults {
					delete(p.results, id)
				}
			}
			p.mu.Unlock()
		}
	}
}

// fanOut pushes each new event of the log to this node's sockets (the
// first attempt) and remembers what it wrote. It runs on the log's
// reader, in log order.
func (p *Pusher) fanOut(evs []store.Event) {
	now := time.Now()
	for i := range evs {
		ev := &evs[i]
		r := &result{at: now, done: make(chan struct{})}
		p.mu.Lock()
		p.results[ev.ID] = r
		p.mu.Unlock()
		res, later := p.local.Push(ev, 1, now, func(res delivery.PushResult) {
			res.At = now
			p.mu.Lock()
			r.res = res
			p.mu.Unlock()
			close(r.done)
		})
		if !later {
			res.At = now
			p.mu.Lock()
			r.res = res
			p.mu.Unlock()
			close(r.done)
		}
	}
}

// localReport is what this node's fan-out wrote of an event at log
// position seq (waiting for the fan-out to get there, and for held
// frames to be resolved).
func (p *Pusher) localReport(evtID string, seq uint64) delivery.PushResult {
	deadline := time.Now().Add(answerWait)
	if !p.st.WaitApplied(seq, answerWait) {
		return delivery.PushResult{}
	}
	p.mu.Lock()
	r := p.results[evtID]
	p.mu.Unlock()
	if r == nil {
		return delivery.PushResult{} // pushed to nobody here (or forgotten)
	}
	select {
	case <-r.done:
	case <-time.After(time.Until(deadline)):
		return delivery.PushResult{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.res
}

// Push implements delivery.Pusher for the cluster: it always answers
// later, once every live node has answered (or the bound passed).
func (p *Pusher) Push(ev *store.Event, attempt int, at time.Time, done func(delivery.PushResult)) (delivery.PushResult, bool) {
	report := attempt == 1 && p.cfg.FirstDelay == 0
	req := request{ID: p.nextID.Add(1), From: p.self, Event: ev.ID}
	if report {
		seq, ok := p.st.Seq(ev.ID)
		if !ok {
			done(delivery.PushResult{})
			return delivery.PushResult{}, true
		}
		req.Seq = seq
	} else {
		req.Account, req.Inbox, req.Type, req.Message = ev.AccountID, ev.InboxID, ev.Type, ev.MessageID
		req.Attempt, req.AtMs, req.Head, req.Tail = attempt, at.UnixMilli(), ev.Head, ev.Tail
	}
	g := &gather{id: req.ID, want: map[string]bool{}, done: done}
	for _, n := range p.st.LiveNodes() {
		if n != p.self {
			g.want[n] = true
		}
	}
	p.mu.Lock()
	p.pending[req.ID] = g
	p.mu.Unlock()
	if len(g.want) > 0 {
		p.mu.Lock()
		g.timer = time.AfterFunc(answerWait, func() { p.timeout(g) })
		p.mu.Unlock()
		subj := subjPush
		if report {
			subj = subjReport
		}
		b, _ := json.Marshal(req)
		p.m.requests.Inc()
		if err := p.nc.PublishRequest(subj, p.inbox+"."+itoa(req.ID), b); err != nil {
			p.log.Warn("cannot ask the other nodes", "event", ev.ID, "error", err)
			p.timeout(g)
		}
	}
	// This node's own part, off the caller's goroutine (it may wait).
	go func() {
		var res delivery.PushResult
		if report {
			res = p.localReport(ev.ID, req.Seq)
		} else {
			res = p.pushHere(ev, attempt, at)
		}
		p.add(req.ID, g, p.self, res)
	}()
	return delivery.PushResult{}, true
}

// pushHere pushes an attempt to this node's sockets and waits for the
// result.
func (p *Pusher) pushHere(ev *store.Event, attempt int, at time.Time) delivery.PushResult {
	ch := make(chan delivery.PushResult, 1)
	res, later := p.local.Push(ev, attempt, at, func(r delivery.PushResult) { ch <- r })
	if !later {
		return res
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(answerWait):
		return delivery.PushResult{}
	}
}

// add folds one node's answer into a gather (the local one is added with
// its gather known directly, node == p.self).
func (p *Pusher) add(id uint64, g *gather, node string, r delivery.PushResult) {
	p.mu.Lock()
	if g == nil {
		g = p.pending[id]
	}
	if g == nil || g.fired {
		p.mu.Unlock()
		return
	}
	if node == p.self {
		g.localIn = true
	} else if !g.want[node] {
		p.mu.Unlock()
		return // not asked (joined meanwhile), or answered already
	}
	delete(g.want, node)
	g.sum.Matched += r.Matched
	g.sum.Written += r.Written
	g.sum.Acking += r.Acking
	if r.Written > 0 && !r.At.IsZero() && (g.sum.At.IsZero() || r.At.Before(g.sum.At)) {
		g.sum.At = r.At // the first write anywhere
	}
	complete := len(g.want) == 0 && g.localIn
	p.mu.Unlock()
	if complete {
		p.finish(g, false)
	}
}

// timeout gives up on the nodes that have not answered: they count as
// having written nothing.
func (p *Pusher) timeout(g *gather) {
	p.mu.Lock()
	if g.fired {
		p.mu.Unlock()
		return
	}
	if len(g.want) > 0 {
		p.m.timeouts.Inc()
		p.log.Debug("nodes did not answer in time", "nodes", len(g.want))
	}
	g.want = map[string]bool{}
	complete := g.localIn
	p.mu.Unlock()
	if complete {
		p.finish(g, true)
	}
}

// finish reports a gather's sum, once.
func (p *Pusher) finish(g *gather, _ bool) {
	p.mu.Lock()
	if g.fired {
		p.mu.Unlock()
		return
	}
	g.fired = true
	delete(p.pending, g.id)
	if g.timer != nil {
		g.timer.Stop()
	}
	sum := g.sum
	p.mu.Unlock()
	g.done(sum)
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// onAnswer takes another node's answer to one of this node's requests.
func (p *Pusher) onAnswer(m *nats.Msg) {
	var a answer
	if json.Unmarshal(m.Data, &a) != nil {
		return
	}
	p.m.answers.Inc()
	r := delivery.PushResult{Matched: a.Matched, Written: a.Written, Acking: a.Acking}
	if a.AtMs != 0 {
		r.At = time.UnixMilli(a.AtMs)
	}
	p.add(a.ID, nil, a.Node, r)
}

func (p *Pusher) reply(m *nats.Msg, id uint64, r delivery.PushResult) {
	a := answer{ID: id, Node: p.self, Matched: r.Matched, Written: r.Written, Acking: r.Acking}
	if !r.At.IsZero() {
		a.AtMs = r.At.UnixMilli()
	}
	b, _ := json.Marshal(a)
	_ = p.nc.Publish(m.Reply, b)
}

// onReport answers another node's question about an event's fan-out.
func (p *Pusher) onReport(m *nats.Msg) {
	var req request
	if json.Unmarshal(m.Data, &req) != nil || req.From == p.self || m.Reply == "" {
		return
	}
	go p.reply(m, req.ID, p.localReport(req.Event, req.Seq))
}

// onPush pushes another node's attempt to this node's sockets.
func (p *Pusher) onPush(m *nats.Msg) {
	var req request
	if json.Unmarshal(m.Data, &req) != nil || req.From == p.self || m.Reply == "" {
		return
	}
	ev := &store.Event{ID: req.Event, AccountID: req.Account, InboxID: req.Inbox, Type: req.Type, MessageID: req.Message,
		Head: req.Head, Tail: req.Tail}
	go p.reply(m, req.ID, p.pushHere(ev, req.Attempt, time.UnixMilli(req.AtMs)))
}
