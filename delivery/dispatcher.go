package delivery

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/delivery/webhook"
	"github.com/mailwire/mailwire/store"
)

// PushResult is what one push of an event did (PROTOCOL.md §6: an attempt
// is decided by the same push that wrote the frame).
type PushResult struct {
	// Matched counts the live connections whose subscription matches.
	Matched int
	// Written counts those that took the frame.
	Written int
	// Acking counts, of Written, the connections that subscribed with
	// "ack": true: for them the write succeeds only once acked.
	Acking int
}

// Pusher writes events to live WebSocket connections; the engine
// implements it. Push is called from dispatch workers and must not block
// on the network.
type Pusher interface {
	// Push encodes the payload of the given attempt once and writes it to
	// every matching connection. When the result depends on frames held
	// by connections in the middle of a subscribe (nothing could be
	// written at once), Push returns later=true and calls done exactly
	// once, possibly before it returns, with the final result.
	Push(ev *store.Event, attempt int, at time.Time, done func(PushResult)) (res PushResult, later bool)
}

// Config configures a Dispatcher. Zero fields take the documented default.
type Config struct {
	// Schedule is the delay before each attempt of a cycle, from the
	// previous one (the first from the event's creation); its length is
	// the number of attempts. Default 0s,30s,60s,2m,4m.
	Schedule []time.Duration
	// AckTimeout, when > 0, makes a WebSocket attempt written only to
	// connections that subscribed with "ack": true succeed only once one
	// of them acks the event within it; otherwise the attempt fails and
	// the next one prefers the webhook. Default 0 (off).
	AckTimeout time.Duration
	// Workers is the number of dispatch workers (each owns the accounts
	// hashed to it, keeping one account's events in order). Default 2.
	Workers int
	// QueueSize bounds the events waiting for a dispatch worker, over all
	// workers. Default 16384.
	QueueSize int
	// Webhook configures the webhook client (timeouts, limits, SSRF).
	Webhook webhook.Config
	// WebhookWorkers is the number of concurrent webhook requests.
	// Default 64.
	WebhookWorkers int
	// WebhookQueue bounds the webhook attempts waiting for a worker.
	// Default 16384.
	WebhookQueue int
	// WebhookPerHost caps concurrent requests to one host, so one slow or
	// recovering endpoint cannot take every worker (and an endpoint is not
	// flooded after a restart). Default WebhookWorkers/2.
	WebhookPerHost int
	// Retention is how long delivered events are kept; default 168h.
	Retention time.Duration
	// FailedRetention is how long failed events are kept; default 720h.
	FailedRetention time.Duration
	// Metrics is the set the dispatcher registers its metrics in.
	Metrics *metrics.Set
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now (tests inject one).
	Now func() time.Time
}

// DefaultSchedule is PROTOCOL.md §6's retry schedule.
var DefaultSchedule = []time.Duration{0, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}

func (c *Config) setDefaults() {
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 16384
	}
	if c.WebhookWorkers <= 0 {
		c.WebhookWorkers = 64
	}
	if c.WebhookQueue <= 0 {
		c.WebhookQueue = 16384
	}
	if c.WebhookPerHost <= 0 {
		c.WebhookPerHost = max(1, c.WebhookWorkers/2)
	}
	if c.Retention <= 0 {
		c.Retention = 168 * time.Hour
	}
	if c.FailedRetention <= 0 {
		c.FailedRetention = 720 * time.Hour
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ErrClosed is returned by calls made after Shutdown began.
var ErrClosed = errors.New("delivery is shutting down")

// job is one event ready for an attempt. ev and st are set when the
// caller already has them (ingest), else loaded by the worker.
type job struct {
	accountID string
	evtID     string
	dueMs     int64
	ev        *store.Event
	// fresh: the event was just stored by ingest with the initial state
	// (pending, no attempt yet): the worker need not read it back.
	fresh bool
}

// Dispatcher delivers events. Create it with New, attach the engine with
// SetPusher, then Start; stop it with Shutdown.
type Dispatcher struct {
	db     *store.DB
	cfg    Config
	policy policy
	log    *slog.Logger
	m      *dmetrics

	pusher atomic.Pointer[pusherBox]
	hooks  *webhook.Client

	flights *inflight
	// releaseMu orders Committed calls (see there).
	releaseMu sync.Mutex
	sched     *scheduler
	w         *writer
	pool      *hookPool
	shards    []chan *job
	seed      maphash.Seed

	targets struct {
		mu  sync.Mutex
		gen uint64
		m   map[string]hookTarget
	}

	stop       chan struct{}
	closing    atomic.Bool
	workers    sync.WaitGroup // dispatch workers, scheduler, webhook workers
	writerWG   sync.WaitGroup
	quiesce    sync.Once
	quiesceErr error
	once       sync.Once

	// outbox guards sends to the writer against its end (see writer).
	outbox struct {
		sync.RWMutex
		closed bool
	}
}

type pusherBox struct{ p Pusher }

// New returns a Dispatcher over db.
func New(db *store.DB, cfg Config) *Dispatcher {
	cfg.setDefaults()
	d := &Dispatcher{
		db:      db,
		cfg:     cfg,
		policy:  policy{schedule: cfg.Schedule, ackTimeout: cfg.AckTimeout},
		log:     cfg.Logger.With("component", "delivery"),
		flights: newInflight(),
		stop:    make(chan struct{}),
		seed:    maphash.MakeSeed(),
		hooks:   webhook.NewClient(cfg.Webhook),
	}
	d.targets.m = make(map[string]hookTarget)
	d.sched = newScheduler(d, d.log)
	d.w = &writer{d: d, in: make(chan *outcome, 4*writerBatchMax), quit: make(chan struct{}), log: d.log}
	d.pool = newHookPool(cfg.WebhookQueue, cfg.WebhookPerHost)
	per := max(1, cfg.QueueSize/cfg.Workers)
	for i := 0; i < cfg.Workers; i++ {
		d.shards = append(d.shards, make(chan *job, per))
	}
	d.m = newMetrics(cfg.Metrics, d)
	return d
}

// SetPusher attaches the WebSocket side. Until it is set (or with nil),
// no event is considered to have a WebSocket subscriber.
func (d *Dispatcher) SetPusher(p Pusher) { d.pusher.Store(&pusherBox{p}) }

func (d *Dispatcher) now() time.Time { return d.cfg.Now() }

// Start launches the writer, the scheduler, the dispatch and webhook
// workers. On a read-only store (opened on a full disk) it starts nothing:
// no attempt could be recorded, so none is made until the store reopens.
func (d *Dispatcher) Start() {
	if d.db.ReadOnly() {
		d.log.Warn("the store is read-only: no delivery attempts until it reopens for writing")
		return
	}
	d.writerWG.Add(1)
	go func() { defer d.writerWG.Done(); d.w.run() }()
	d.goWorker(func() { d.sched.run(d.stop) })
	for _, q := range d.shards {
		q := q
		d.goWorker(func() { d.dispatchLoop(q) })
	}
	for i := 0; i < d.cfg.WebhookWorkers; i++ {
		d.goWorker(d.hookLoop)
	}
	d.goWorker(d.sweepLoop)
}

func (d *Dispatcher) goWorker(f func()) {
	d.workers.Add(1)
	go func() { defer d.workers.Done(); f() }()
}

// Quiesce stops making attempts: scheduling and dispatch end, and the
// webhook requests in flight finish (bounded by the webhook timeout) until
// ctx ends, their outcomes recorded. Acks, redelivers and the outcomes of
// WebSocket frames still held are recorded until Shutdown. Events still
// queued keep their due entries and resume at the next start. It is
// idempotent.
func (d *Dispatcher) Quiesce(ctx context.Context) error {
	d.quiesce.Do(func() {
		d.closing.Store(true)
		close(d.stop)
		d.pool.close()
		done := make(chan struct{})
		go func() { d.workers.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			d.quiesceErr = fmt.Errorf("cannot finish in-flight deliveries: %w", ctx.Err())
			// Outcomes of attempts still running are lost; their events
			// keep their due entries and are retried after restart.
			<-done
		}
	})
	return d.quiesceErr
}

// Shutdown quiesces (see Quiesce), records the outcomes already handed in
// and stops the writer. It is idempotent.
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	err := d.Quiesce(ctx)
	d.once.Do(func() {
		d.outbox.Lock()
		d.outbox.closed = true
		d.outbox.Unlock()
		close(d.w.quit)
		d.writerWG.Wait()
		d.hooks.Close()
	})
	return err
}

// enqueue hands a claimed event to its account's dispatch worker; false
// when that queue is full.
func (d *Dispatcher) enqueue(j *job) bool {
	if d.closing.Load() {
		return false
	}
	q := d.shards[maphash.String(d.seed, j.accountID)%uint64(len(d.shards))]
	select {
	case q <- j:
		return true
	default:
		d.m.deferred.Inc()
		return false
	}
}

// unclaim releases an event that left the pipeline without an outcome
// and points the scheduler at its due entry.
func (d *Dispatcher) unclaim(evtID string, dueMs int64) {
	d.flights.release(evtID)
	if dueMs != 0 {
		d.sched.lower(store.DueKey(dueMs, evtID))
	}
}

// NewEvents implements ingest.Sink: it makes one event id per account
// (in order) and claims them for the commit about to happen.
func (d *Dispatcher) NewEvents(accountIDs []string) []string { return d.flights.newEvents(accountIDs) }

// Committed implements ingest.Sink: the events are durable (err == nil)
// and get their first attempt now, unless the schedule delays it. Events
// of one account are dispatched in id order: one whose earlier events are
// still being stored waits for them (see inflight).
func (d *Dispatcher) Committed(evts []store.Event, err error) {
	// Releasing and queueing are one step: a commit report that returns
	// later must not queue its account's (later) events first.
	d.releaseMu.Lock()
	defer d.releaseMu.Unlock()
	released := d.flights.committed(evts, err == nil)
	if err == nil {
		d.m.stored.Add(len(evts))
	}
	for i := range released {
		ev := &released[i]
		// The same arithmetic as ingest's first NextAt: the scheduler's
		// cursor relies on exact keys.
		dueMs := ev.OccurredAt().UnixMilli() + d.cfg.Schedule[0].Milliseconds()
		if d.cfg.Schedule[0] > 0 {
			d.unclaim(ev.ID, dueMs)
			continue
		}
		if !d.enqueue(&job{accountID: ev.AccountID, evtID: ev.ID, dueMs: dueMs, ev: ev, fresh: true}) {
			d.unclaim(ev.ID, dueMs)
		}
	}
}

// FirstAttemptDelay is the schedule's first delay (ingest stores it as the
// event's first due time).
func (d *Dispatcher) FirstAttemptDelay() time.Duration { return d.cfg.Schedule[0] }

// StableBound returns an event id below which every event of the account
// is durable and no other can appear: readers that resume from a cursor
// (replay, the pull API) stop before it (see inflight).
func (d *Dispatcher) StableBound(accountID string) string { return d.flights.stableBound(accountID) }

// InFlight reports whether the event is still in the delivery pipeline
// (committing, queued or being attempted): a live push of it may still
// come.
func (d *Dispatcher) InFlight(evtID string) bool { return d.flights.claimed(evtID) }

// Replayed records that a replay wrote a pending event of the account to a
// connection that does not ack: a successful WebSocket attempt at at
// (PROTOCOL.md §6, settling).
func (d *Dispatcher) Replayed(accountID, evtID string, at time.Time) {
	_ = d.submit(&outcome{kind: kindReplayed, accountID: accountID, evtID: evtID, startMs: at.UnixMilli()}, false)
}

// Ack records a client's ack of an event of the account. Unknown ids are
// ignored (the engine validated the shape).
func (d *Dispatcher) Ack(accountID, evtID string) error {
	return d.submit(&outcome{kind: kindAck, accountID: accountID, evtID: evtID}, false)
}

// Redeliver starts a new delivery cycle for an event of the account: the
// schedule restarts now. It returns once that is durable.
func (d *Dispatcher) Redeliver(accountID, evtID string) error {
	if _, err := d.db.GetEventState(accountID, evtID); err != nil {
		return err
	}
	return d.submit(&outcome{kind: kindRedeliver, accountID: accountID, evtID: evtID}, true)
}

// submit passes an outcome to the writer; wait blocks until it is durable.
func (d *Dispatcher) submit(o *outcome, wait bool) error {
	if d.closing.Load() {
		return ErrClosed
	}
	if d.db.ReadOnly() {
		return store.ErrReadOnly // nothing runs on a read-only store (see Start)
	}
	if wait {
		o.done = make(chan error, 1)
	}
	if !d.post(o) {
		return ErrClosed
	}
	if wait {
		return <-o.done
	}
	return nil
}

func (d *Dispatcher) dispatchLoop(q chan *job) {
	for {
		select {
		case <-d.stop:
			return
		case j := <-q:
			d.attempt(j)
		}
	}
}

// attempt runs one delivery attempt of a claimed event: it chooses the
// channel (PROTOCOL.md §6) and reports the outcome to the writer (webhook
// attempts report from the webhook pool).
func (d *Dispatcher) attempt(j *job) {
	st, err := store.EventState{Status: store.StatusPending, NextAt: j.dueMs}, error(nil)
	if !j.fresh {
		// Anything may have happened since the due entry was written (an
		// ack, a redeliver, a deleted inbox): read the truth. The writer
		// re-reads it anyway before applying the outcome.
		st, err = d.db.GetEventState(j.accountID, j.evtID)
	}
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			d.log.Error("cannot read event state", "event", j.evtID, "error", err)
			d.unclaim(j.evtID, 0)
			return
		}
		d.post(&outcome{kind: kindRepair, accountID: j.accountID, evtID: j.evtID, dueMs: j.dueMs, claimed: true})
		return
	}
	if st.Status != store.StatusPending || st.NextAt == 0 {
		d.post(&outcome{kind: kindRepair, accountID: j.accountID, evtID: j.evtID, dueMs: j.dueMs, claimed: true})
		return
	}
	if !j.fresh && st.NextAt != j.dueMs {
		// The scheduler's scan reads a snapshot: this due entry was
		// replaced (the writer moved the event on) after the scan began.
		// The event is due at st.NextAt, not now.
		d.unclaim(j.evtID, st.NextAt)
		return
	}
	if st.AwaitingAck {
		d.post(&outcome{kind: kindAckTimeout, accountID: j.accountID, evtID: j.evtID, claimed: true})
		return
	}
	ev := j.ev
	if ev == nil {
		e, err := d.db.GetEvent(j.evtID)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				d.log.Error("cannot read event", "event", j.evtID, "error", err)
				d.unclaim(j.evtID, 0)
				return
			}
			// A state without its event (or message): delete it, or the
			// scheduler would pick it again and again.
			d.post(&outcome{kind: kindRepair, accountID: j.accountID, evtID: j.evtID, dueMs: j.dueMs, claimed: true, eventGone: true})
			return
		}
		ev = &e
	}
	now := d.now()
	o := &outcome{
		kind: kindAttempt, accountID: j.accountID, evtID: j.evtID, claimed: true,
		n: st.Attempts + 1, cycle: st.CycleStart, startMs: now.UnixMilli(),
	}
	// The channel is chosen afresh (PROTOCOL.md §6): a matching connection,
	// else the webhook, else none; after an ack timeout the webhook first
	// when one applies.
	var url, secret string
	looked := false
	lookup := func() bool {
		looked = true
		if url, secret, err = d.webhookTarget(ev.AccountID, ev.InboxID); err != nil {
			d.log.Error("cannot read webhook settings", "event", ev.ID, "error", err)
			d.unclaim(j.evtID, j.dueMs)
			return false
		}
		return true
	}
	if st.PreferWebhook && !lookup() {
		return
	}
	if pb := d.pusher.Load(); url == "" && pb != nil && pb.p != nil {
		res, later := pb.p.Push(ev, o.n, now, func(r PushResult) { d.postSoon(d.wsOutcome(o, now, r)) })
		if later {
			return // the callback records the attempt once the held frames are resolved
		}
		if res.Matched > 0 {
			d.post(d.wsOutcome(o, now, res))
			return
		}
	}
	if !looked && !lookup() {
		return
	}
	if url == "" {
		o.channel = store.ChannelNone
		o.errText = "no WebSocket subscribed and no webhook configured"
		d.post(o)
		return
	}
	hj := &hookJob{o: o, ev: ev, url: url, secret: secret, host: hostOf(url)}
	if !d.pool.submit(hj) {
		d.m.deferred.Inc()
		d.unclaim(j.evtID, j.dueMs)
	}
}

// wsOutcome turns a push's result into the attempt's outcome: a frame
// written to a connection that does not ack is a success; one written
// only to connections that ack waits for an ack (when the extension is
// on); none written is a failed attempt.
func (d *Dispatcher) wsOutcome(o *outcome, start time.Time, r PushResult) *outcome {
	o.channel = store.ChannelWebSocket
	switch {
	case r.Written > r.Acking:
		o.ok = true
	case r.Written > 0:
		o.ok = true
		o.awaitAck = d.cfg.AckTimeout > 0
	default:
		o.errText = fmt.Sprintf("%d matching connection(s), none took the frame", r.Matched)
	}
	o.duration = time.Since(start)
	return o
}

// post hands an outcome to the writer. It may block while the writer is
// behind (bounded by its queue); after Shutdown the outcome is dropped (the
// event keeps its due entry and is retried at the next start) and post
// reports false.
func (d *Dispatcher) post(o *outcome) bool {
	d.outbox.RLock()
	defer d.outbox.RUnlock()
	if d.outbox.closed {
		return false
	}
	d.w.in <- o
	return true
}

// postSoon is post for callers that must not block (a held push resolved
// on nbio's poller): when the writer's queue is full, the outcome is
// handed over on a goroutine of its own.
func (d *Dispatcher) postSoon(o *outcome) {
	d.outbox.RLock()
	if d.outbox.closed {
		d.outbox.RUnlock()
		return
	}
	select {
	case d.w.in <- o:
		d.outbox.RUnlock()
		return
	default:
	}
	d.outbox.RUnlock()
	go d.post(o)
}

// webhookTarget returns the URL and secret that apply to an inbox: its
// own, else the account's; "" when neither is set. Answers are cached
// until the store's settings generation moves (any inbox or webhook
// change), so a steady stream of attempts does not re-read settings.
func (d *Dispatcher) webhookTarget(accountID, inboxID string) (url, secret string, err error) {
	gen := d.db.SettingsGen()
	d.targets.mu.Lock()
	if d.targets.gen != gen {
		clear(d.targets.m)
		d.targets.gen = gen
	}
	t, ok := d.targets.m[inboxID]
	d.targets.mu.Unlock()
	if ok {
		return t.url, t.secret, nil
	}
	url, secret, err = d.readWebhookTarget(accountID, inboxID)
	if err != nil {
		return "", "", err
	}
	d.targets.mu.Lock()
	if d.targets.gen == gen {
		if len(d.targets.m) >= targetCacheMax {
			clear(d.targets.m)
		}
		d.targets.m[inboxID] = hookTarget{url, secret}
	}
	d.targets.mu.Unlock()
	return url, secret, nil
}

// targetCacheMax bounds the webhook settings cache (entries, one per inbox
// recently attempted); beyond it the cache starts over.
const targetCacheMax = 100_000

type hookTarget struct{ url, secret string }

func (d *Dispatcher) readWebhookTarget(accountID, inboxID string) (url, secret string, err error) {
	in, err := d.db.GetInbox(accountID, inboxID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", "", err
	}
	if err == nil && in.WebhookURL != "" {
		return in.WebhookURL, in.WebhookSecret, nil
	}
	w, err := d.db.GetWebhook(accountID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return w.URL, w.Secret, nil
}
