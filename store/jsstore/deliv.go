package jsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/promtext"
	"github.com/mailwire/mailwire/store"
)

// deliveries is the cluster's delivery side (store.Deliveries). Leases
// come from two durable consumers shared by every node: consumerFirst
// hands out each new event once (its first attempt), consumerDue each
// fired retry. A lease is the consumer message: JetStream hands it to
// another node if this one does not ack it within ackWait (it died).
// Outcomes are compare-and-set changes of bucketState (applyChange); the
// next attempt of a pending event is a schedule message in streamDue.
type deliveries struct {
	s          *Store
	firstDelay atomic.Int64 // time.Duration
	deliver    atomic.Pointer[func(*store.Lease) bool]

	mu      sync.Mutex
	started bool
	ccs     []jetstream.ConsumeContext
	cons    []jetstream.Consumer

	leased leases // the leases out on this node

	// outbox guards the record workers' queue against its end.
	outbox struct {
		sync.RWMutex
		closed bool
	}
	work    chan func()
	workWG  sync.WaitGroup
	spill   sync.WaitGroup
	stopped sync.Once
	ended   sync.Once

	m struct {
		handed   *metrics.Counter
		deferred *metrics.Counter
		recorded *metrics.Counter
		failed   *metrics.Counter
		overheld *metrics.Counter
	}
}

// recordWorkers apply outcomes concurrently (each is a few round trips).
const recordWorkers = 64

// token is a lease's consumer message. mu orders the keep-alive against
// the lease's end: no InProgress goes out after its Ack or Nak.
type token struct {
	msg   jetstream.Msg
	first bool // from consumerFirst

	mu     sync.Mutex
	ended  bool
	handed time.Time // when the dispatcher got it
	beaten time.Time // the last InProgress
}

// leases are the leases out on this node: each token (two leases of one
// event can be out at once: a first attempt and a redeliver's due
// message) and, per event id, how many (InFlight).
type leases struct {
	mu   sync.Mutex
	toks map[*token]string
	ids  map[string]int
}

func (ls *leases) add(tok *token, evtID string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if _, ok := ls.toks[tok]; ok {
		return
	}
	ls.toks[tok] = evtID
	ls.ids[evtID]++
}

// drop forgets tok; false when it was not out (already ended).
func (ls *leases) drop(tok *token) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	id, ok := ls.toks[tok]
	if !ok {
		return false
	}
	delete(ls.toks, tok)
	if ls.ids[id]--; ls.ids[id] <= 0 {
		delete(ls.ids, id)
	}
	return true
}

func (ls *leases) has(evtID string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.ids[evtID] > 0
}

func (ls *leases) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.toks)
}

func (ls *leases) snapshot() []*token {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]*token, 0, len(ls.toks))
	for t := range ls.toks {
		out = append(out, t)
	}
	return out
}

// endLease ends a lease: ack (it needs no attempt, or its outcome is
// recorded), nak after delay (another try), both at most once.
func (d *deliveries) endLease(tok *token, ack bool, delay time.Duration) {
	d.leased.drop(tok)
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if tok.ended {
		return
	}
	tok.ended = true
	switch {
	case ack:
		_ = tok.msg.Ack()
	case delay > 0:
		_ = tok.msg.NakWithDelay(delay)
	default:
		_ = tok.msg.Nak()
	}
}

func newDeliveries(s *Store) *deliveries {
	d := &deliveries{s: s, work: make(chan func(), 1<<16)}
	d.leased.toks, d.leased.ids = map[*token]string{}, map[string]int{}
	d.m.handed = s.m.set.NewCounter(promtext.Describe("mailwire_delivery_scheduled_total", "Delivery attempts handed to the dispatcher (leases)."))
	d.m.deferred = s.m.set.NewCounter(promtext.Describe("mailwire_delivery_deferred_total", "Attempts given back because the dispatcher's queue was full (they run later)."))
	d.m.recorded = s.m.set.NewCounter(promtext.Describe("mailwire_cluster_outcomes_recorded_total", "Attempt outcomes this node recorded in JetStream."))
	d.m.failed = s.m.set.NewCounter(promtext.Describe("mailwire_cluster_outcomes_failed_total", "Attempt outcomes this node could not record in JetStream (the lease is redelivered)."))
	promtext.Describe("mailwire_nats_consumer_pending", "Messages a JetStream consumer of this node has not been handed yet, by consumer.")
	promtext.Describe("mailwire_nats_consumer_ack_pending", "Messages handed to a JetStream consumer of this node and not yet acknowledged, by consumer.")
	promtext.Describe("mailwire_nats_consumer_redelivered", "Messages a JetStream consumer of this node was handed more than once, by consumer.")
	d.m.overheld = s.m.set.NewCounter(promtext.Describe("mailwire_cluster_leases_overheld_total", "Leases held past leaseMaxHold and left to another node (a stuck attempt)."))
	s.wg.Add(1)
	go d.beat()
	for range recordWorkers {
		d.workWG.Add(1)
		go func() {
			defer d.workWG.Done()
			for f := range d.work {
				f()
			}
		}()
	}
	return d
}

// beat tells JetStream, every leaseBeat, that the node still works on
// each lease it holds (the attempt may be a held push or a slow webhook),
// so a live node's lease does not expire while a dead node's does after
// ackWait. A lease held longer than leaseMaxHold is no longer kept alive
// (a stuck attempt must not pin it): it goes to another node. Each
// InProgress is a replicated write, so a lease is beaten only when its
// last one is half an ackWait old.
func (d *deliveries) beat() {
	defer d.s.wg.Done()
	t := time.NewTicker(leaseBeat)
	defer t.Stop()
	for {
		select {
		case <-d.s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, tok := range d.leased.snapshot() {
			if d.s.ctx.Err() != nil {
				return
			}
			tok.mu.Lock()
			switch {
			case tok.ended || now.Sub(tok.beaten) < ackWait/2:
			case now.Sub(tok.handed) > leaseMaxHold:
				if !tok.beaten.IsZero() && tok.beaten.Before(tok.handed.Add(leaseMaxHold)) {
					d.m.overheld.Inc()
					d.s.log.Warn("a lease is held too long: it is left to another node", "held", now.Sub(tok.handed).Round(time.Second))
					tok.beaten = now.Add(24 * time.Hour) // once
				}
			default:
				_ = tok.msg.InProgress()
				tok.beaten = now
			}
			tok.mu.Unlock()
		}
	}
}

// StartDeliveries implements store.Deliveries.
func (s *Store) StartDeliveries(cfg store.DeliveryConfig) {
	d := s.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		panic("BUG: deliveries started twice")
	}
	d.started = true
	d.firstDelay.Store(int64(cfg.FirstDelay))
	deliver := cfg.Deliver
	d.deliver.Store(&deliver)
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	for _, c := range []struct {
		stream jetstream.Stream
		name   string
		subj   string
		fn     func(jetstream.Msg)
	}{
		{s.events, consumerFirst, subjEvent + ".>", d.onFirst},
		{s.due, consumerDue, subjDue + ".>", d.onDue},
	} {
		cons, err := retry(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
			return c.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
				Durable: c.name, FilterSubject: c.subj, AckPolicy: jetstream.AckExplicitPolicy,
				AckWait: ackWait, MaxAckPending: maxLeases, MaxDeliver: -1,
				DeliverPolicy: jetstream.DeliverAllPolicy, Replicas: s.opts.Replicas,
			})
		})
		if err != nil {
			s.log.Error("cannot start deliveries", "consumer", c.name, "error", err)
			continue
		}
		cc, err := cons.Consume(c.fn, jetstream.PullMaxMessages(fetchBatch),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if s.ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
					s.log.Debug("delivery consumer", "consumer", c.name, "error", err)
				}
			}))
		if err != nil {
			s.log.Error("cannot start deliveries", "consumer", c.name, "error", err)
			continue
		}
		d.ccs = append(d.ccs, cc)
		d.cons = append(d.cons, cons)
	}
}

// StopDeliveries implements store.Deliveries: no lease is handed out
// after it; leases out are recorded or given back by their holders.
func (s *Store) StopDeliveries(context.Context) {
	d := s.dl
	d.stopped.Do(func() {
		d.deliver.Store(nil)
		d.mu.Lock()
		for _, cc := range d.ccs {
			cc.Stop()
		}
		d.mu.Unlock()
	})
}

// end finishes the outcomes handed over, then refuses more (Close).
func (d *deliveries) end() {
	d.ended.Do(func() {
		d.s.StopDeliveries(context.Background())
		d.outbox.Lock()
		d.outbox.closed = true
		d.outbox.Unlock()
		d.spill.Wait()
		close(d.work)
		d.workWG.Wait()
	})
}

// submit runs f on a record worker without blocking (a goroutine waits
// with it when the queue is full); false after end.
func (d *deliveries) submit(f func()) bool {
	d.outbox.RLock()
	if d.outbox.closed {
		d.outbox.RUnlock()
		return false
	}
	select {
	case d.work <- f:
		d.outbox.RUnlock()
		return true
	default:
	}
	d.spill.Add(1)
	d.outbox.RUnlock()
	go func() {
		defer d.spill.Done()
		d.outbox.RLock()
		defer d.outbox.RUnlock()
		if d.outbox.closed {
			f() // end is waiting for us: run it here
			return
		}
		d.work <- f
	}()
	return true
}

var errClosed = errors.New("the store is closing")

// hand offers a lease to the dispatcher; false (the message is given back
// shortly) when deliveries are stopped or its queue is full.
func (d *deliveries) hand(l *store.Lease) {
	tok := l.Token.(*token)
	fn := d.deliver.Load()
	if fn == nil || *fn == nil {
		d.endLease(tok, false, 0)
		return
	}
	now := time.Now()
	tok.handed, tok.beaten = now, now
	d.leased.add(tok, l.EventID)
	if !(*fn)(l) {
		d.m.deferred.Inc()
		d.endLease(tok, false, time.Second)
		return
	}
	d.m.handed.Inc()
}

// onFirst takes a new event from consumerFirst.
func (d *deliveries) onFirst(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	h := m.Headers()
	ev := store.Event{ID: h.Get(hMsgID), AccountID: h.Get(hAccount), InboxID: h.Get(hInbox), Type: h.Get(hType), MessageID: h.Get(hMessage)}
	if ev.ID == "" {
		_ = m.Term()
		return
	}
	payload, _, ok := splitRecord(h, m.Data())
	if !ok {
		_ = m.Term()
		return
	}
	// A copy: the lease must not keep the record (raw bytes,
	// attachments) alive while it waits for its attempt.
	ev.Head, ev.Tail = splitPayload(h, bytes.Clone(payload))
	st := d.s.initialState(ev.ID, ev.InboxID, ev.Type)
	if time.Duration(d.firstDelay.Load()) > 0 {
		// The first attempt is due later: it becomes a schedule.
		if err := d.s.schedule(ev.AccountID, ev.ID, st.NextAt); err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
		return
	}
	d.hand(&store.Lease{AccountID: ev.AccountID, EventID: ev.ID, Event: ev, State: st, DueMs: st.NextAt,
		Fresh: md.NumDelivered == 1, Token: &token{msg: m, first: true}})
}

// onDue takes a fired retry from consumerDue.
func (d *deliveries) onDue(m jetstream.Msg) {
	h := m.Headers()
	due, err := strconv.ParseInt(h.Get(hDue), 10, 64)
	if err != nil || h.Get(hEvent) == "" {
		_ = m.Term()
		return
	}
	d.hand(&store.Lease{AccountID: h.Get(hAccount), EventID: h.Get(hEvent), DueMs: due, Token: &token{msg: m}})
}

// schedule makes (or replaces) the event's schedule message: a due
// message for it fires at atMs.
func (s *Store) schedule(accountID, evtID string, atMs int64) error {
	m := nats.NewMsg(subjSched + "." + evtID)
	at := time.UnixMilli(atMs).UTC()
	m.Header.Set("Nats-Schedule", "@at "+at.Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", subjDue+"."+evtID)
	m.Header.Set(hAccount, accountID)
	m.Header.Set(hEvent, evtID)
	m.Header.Set(hDue, strconv.FormatInt(atMs, 10))
	ctx, cancel := s.opCtx()
	defer cancel()
	// A schedule replaces the event's last one (one per subject). The
	// Msg-Id, one per call, makes the tries of this call one schedule even
	// when the first copy already fired and was purged (a second copy
	// would fire again at once: a second due message for the same time);
	// a later call for the same time (applyChange's leaseDue) is a new
	// schedule. The server drops Nats-Msg-Id from the message a schedule
	// fires.
	_, err := s.publish(ctx, m, evtID+"@"+strconv.FormatInt(atMs, 10)+"."+strconv.FormatUint(rand.Uint64(), 36))
	return err
}

// Ready implements store.EventLog: a fresh lease is ready as it comes;
// any other loads the event's state (from the bucket's leader) and its
// payload, and ends leases that need no attempt (the state moved on, the
// event is gone).
func (s *Store) Ready(l *store.Lease) bool {
	tok := l.Token.(*token)
	if l.Fresh {
		if s.idx.isDeleted(l.Event.InboxID) {
			s.endLease(l, true)
			return false
		}
		return true
	}
	e, ok := s.idx.eventWait(l.EventID)
	if !ok {
		s.endLease(l, true) // deleted with its inbox, or aged out
		return false
	}
	v, _, err := s.loadState(e.id, e.inbox, e.typ)
	if err != nil {
		s.log.Warn("cannot read delivery state", "event", l.EventID, "error", err)
		s.releaseAfter(l, store.ErrorBackoff)
		return false
	}
	st := v.st
	if st.Status == store.StatusPending && st.NextAt != 0 && st.NextAt < l.DueMs && redelivered(tok) < 4 {
		// The state may be behind this due message: its schedule is
		// published before the compare-and-set that writes the state, so
		// a due time close to now can fire first. Ask again shortly
		// rather than drop the only schedule of that time.
		s.releaseAfter(l, store.ErrorBackoff)
		return false
	}
	if st.Status != store.StatusPending || st.NextAt == 0 || st.NextAt != l.DueMs {
		// Settled, or this due message was replaced by a later schedule
		// (which brings its own lease).
		s.endLease(l, true)
		return false
	}
	if !tok.first || len(l.Event.Tail) == 0 {
		ev, err := s.eventOf(e)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				s.endLease(l, true)
				return false
			}
			s.releaseAfter(l, store.ErrorBackoff)
			return false
		}
		l.Event = ev
	}
	l.AccountID = e.acc
	l.State = st
	return true
}

// redelivered is how many times the lease's message was handed out
// before this one.
func redelivered(tok *token) uint64 {
	md, err := tok.msg.Metadata()
	if err != nil || md.NumDelivered == 0 {
		return 0
	}
	return md.NumDelivered - 1
}

// endLease acks a lease's message (ack: it needs no attempt) or leaves
// it for redelivery.
func (s *Store) endLease(l *store.Lease, ack bool) {
	tok := l.Token.(*token)
	if ack {
		s.dl.endLease(tok, true, 0)
		return
	}
	s.dl.leased.drop(tok)
}

func (s *Store) releaseAfter(l *store.Lease, d time.Duration) {
	s.dl.endLease(l.Token.(*token), false, d)
}

// Record implements store.Deliveries.
func (s *Store) Record(l *store.Lease, change store.Change, done store.Recorded) {
	ok := s.dl.submit(func() {
		old, nw, err := s.applyChange(l.AccountID, l.EventID, l.Event.InboxID, l.Event.Type, change, max(l.DueMs, 1))
		if err != nil {
			s.dl.m.failed.Inc()
			s.log.Warn("cannot record an attempt: it is made again", "event", l.EventID, "error", err)
			s.releaseAfter(l, store.ErrorBackoff)
		} else {
			s.dl.m.recorded.Inc()
			s.endLease(l, true)
		}
		if done != nil {
			done(old, nw, err)
		}
	})
	if !ok {
		s.dl.leased.drop(l.Token.(*token)) // redelivered to another node
		if done != nil {
			done(store.EventState{}, store.EventState{}, errClosed)
		}
	}
}

// Release implements store.Deliveries.
func (s *Store) Release(l *store.Lease, dueMs int64) {
	d := time.Duration(0)
	if dueMs > 0 {
		d = max(time.Until(time.UnixMilli(dueMs)), 0)
	}
	s.dl.endLease(l.Token.(*token), false, d)
}

// Update implements store.Deliveries.
func (s *Store) Update(accountID, evtID string, change store.Change) error {
	e, ok := s.idx.eventWait(evtID)
	if !ok || e.acc != accountID {
		return store.ErrNotFound
	}
	if err := s.writable(); err != nil {
		return err
	}
	_, _, err := s.applyChange(e.acc, e.id, e.inbox, e.typ, change, 0)
	return err
}

// Submit implements store.Deliveries.
func (s *Store) Submit(accountID, evtID string, change store.Change, done store.Recorded) {
	ok := s.dl.submit(func() {
		err := s.Update(accountID, evtID, change)
		if done != nil {
			done(store.EventState{}, store.EventState{}, err)
		}
	})
	if !ok && done != nil {
		done(store.EventState{}, store.EventState{}, errClosed)
	}
}

// InFlight implements store.Deliveries: a lease of the event is out on
// this node, or the node's fan-out has not pushed it yet.
func (s *Store) InFlight(evtID string) bool {
	if s.dl.leased.has(evtID) {
		return true
	}
	e, ok := s.idx.event(evtID)
	return ok && e.seq > s.idx.pushed.Load()
}

// StableBound implements store.Deliveries: "" (no bound). The node's
// index is a prefix of the log and its fan-out pushes what comes after,
// so a replay of what the index holds misses nothing.
func (s *Store) StableBound(string) string { return "" }

// OnStored implements store.EventLog: fn is told of each event the node
// reads from the log after it started, in log order.
func (s *Store) OnStored(fn func([]store.Event)) {
	x := s.idx
	x.watchMu.Lock()
	defer x.watchMu.Unlock()
	var fns []func([]store.Event)
	if old := x.watchers.Load(); old != nil {
		fns = append(fns, *old...)
	}
	fns = append(fns, fn)
	x.watchers.Store(&fns)
}

// writeMetrics adds the consumers' backlog, read at scrape time.
func (d *deliveries) writeMetrics(w io.Writer) {
	d.mu.Lock()
	cons := append([]jetstream.Consumer(nil), d.cons...)
	d.mu.Unlock()
	for _, c := range cons {
		ctx, cancel := context.WithTimeout(d.s.ctx, time.Second)
		info, err := c.Info(ctx)
		cancel()
		if err != nil {
			continue
		}
		name := info.Name
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`mailwire_nats_consumer_pending{consumer=%q}`, name), info.NumPending)
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`mailwire_nats_consumer_ack_pending{consumer=%q}`, name), uint64(info.NumAckPending))
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`mailwire_nats_consumer_redelivered{consumer=%q}`, name), uint64(info.NumRedelivered))
	}
}

// retry calls f until it succeeds or ctx ends (JetStream answers "no
// suitable peers" for a while after a cluster forms or a server restarts).
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := f(c)
		cancel()
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
