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
	"github.com/mailwire/mailwire/internal/confcheck"
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
	// At is when the frame was written, when that was not the attempt's
	// start (a cluster's fan-out writes an event as it is stored, before
	// an attempt owner asks): the attempt is recorded at it, so the
	// payload the API shows is the one the sockets got. Zero: the start.
	At time.Time
}

// Pusher writes events to live WebSocket connections; the engine
// implements it. Push is called from dispatch workers and must not block
// on the network.
type Pusher interface {
	// Push encodes the payload of the given attempt once and writes it to
	// every matching connection. When the result is not known at once
	// (frames held by connections in the middle of a subscribe; in a
	// cluster, the other nodes' answers), Push returns later=true and
	// calls done exactly once, possibly before it returns, with the final
	// result. A result with no matching connection (Matched 0) sends the
	// attempt on to the webhook, whether it came at once or later.
	Push(ev *store.Event, attempt int, at time.Time, done func(PushResult)) (res PushResult, later bool)
}

// Config configures a Dispatcher. DefaultConfig is a node's defaults; a
// zero field takes the default its comment names (AckTimeout: off). The
// fields a flag sets name it (CONFIG.md), as Validate's messages do.
type Config struct {
	// Schedule is the delay before each attempt of a cycle, from the
	// previous one (the first from the event's creation); its length is
	// the number of attempts (--retry-schedule). Default DefaultSchedule
	// (0s,30s,60s,2m,4m).
	Schedule []time.Duration
	// AckTimeout, when > 0, makes a WebSocket attempt written only to
	// connections that subscribed with "ack": true succeed only once one
	// of them acks the event within it; otherwise the attempt fails and
	// the next one prefers the webhook (--ws-ack-timeout). DefaultConfig:
	// 30s; zero: off.
	AckTimeout time.Duration
	// Workers is the number of dispatch workers (each owns the accounts
	// hashed to it, keeping one account's events in order). Default 2.
	Workers int
	// QueueSize bounds the events waiting for a dispatch worker, over all
	// workers. Default 16384.
	QueueSize int
	// Webhook configures the webhook client (timeouts, limits, SSRF).
	Webhook webhook.Config
	// WebhookWorkers is the number of concurrent webhook requests
	// (--webhook-workers). Default 64.
	WebhookWorkers int
	// WebhookQueue bounds the webhook attempts waiting for a worker.
	// Default 16384.
	WebhookQueue int
	// WebhookPerHost caps concurrent requests to one host, so one slow or
	// recovering endpoint cannot take every worker (and an endpoint is not
	// flooded after a restart). Default WebhookWorkers/2.
	WebhookPerHost int
	// Retention is how long delivered events are kept (--retention);
	// default 168h.
	Retention time.Duration
	// FailedRetention is how long failed events are kept
	// (--failed-retention); default 720h.
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

// DefaultConfig is CONFIG.md's defaults (the webhook client's included).
// It differs from the zero Config in one setting: AckTimeout is 30s, not
// off.
func DefaultConfig() Config {
	return Config{
		Schedule:        append([]time.Duration(nil), DefaultSchedule...),
		AckTimeout:      30 * time.Second,
		Workers:         2,
		QueueSize:       16384,
		Webhook:         webhook.DefaultConfig(),
		WebhookWorkers:  64,
		WebhookQueue:    16384,
		Retention:       168 * time.Hour,
		FailedRetention: 720 * time.Hour,
	}
}

// Validate reports every problem of the settings flags set at once, each
// by its flag.
func (c Config) Validate() error {
	var p confcheck.Problems
	p.Check(len(c.Schedule) >= 1 && len(c.Schedule) <= 100, "--retry-schedule needs 1 to 100 delays")
	p.Check(c.AckTimeout >= 0, "--ws-ack-timeout must not be negative")
	p.Add(c.Webhook.Validate())
	p.Check(c.WebhookWorkers >= 1 && c.WebhookWorkers <= 10000, "--webhook-workers must be between 1 and 10000")
	p.Check(c.Retention > 0, "--retention must be positive")
	p.Check(c.FailedRetention > 0, "--failed-retention must be positive")
	return p.Err()
}

// setDefaults gives every zero field its DefaultConfig value (AckTimeout
// stays: zero is off).
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if len(c.Schedule) == 0 {
		c.Schedule = d.Schedule
	}
	if c.Workers <= 0 {
		c.Workers = d.Workers
	}
	if c.QueueSize <= 0 {
		c.QueueSize = d.QueueSize
	}
	if c.WebhookWorkers <= 0 {
		c.WebhookWorkers = d.WebhookWorkers
	}
	if c.WebhookQueue <= 0 {
		c.WebhookQueue = d.WebhookQueue
	}
	if c.WebhookPerHost <= 0 {
		c.WebhookPerHost = max(1, c.WebhookWorkers/2)
	}
	if c.Retention <= 0 {
		c.Retention = d.Retention
	}
	if c.FailedRetention <= 0 {
		c.FailedRetention = d.FailedRetention
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

// Dispatcher delivers events: it takes the leases the event log hands
// out, chooses each attempt's channel (PROTOCOL.md §6), makes the attempt
// and records its outcome through the log. Create it with New, attach the
// engine with SetPusher, then Start; stop it with Quiesce and Shutdown.
type Dispatcher struct {
	store  store.Store
	cfg    Config
	policy policy
	log    *slog.Logger
	m      *dmetrics
	ops    opLog // rate-limited lines about failures (oplog.go)

	pusher atomic.Pointer[pusherBox]
	hooks  *webhook.Client

	pool   *hookPool
	shards []chan *store.Lease
	seed   maphash.Seed

	targets struct {
		mu  sync.Mutex
		gen uint64
		m   map[string]hookTarget
	}

	stop       chan struct{}
	started    atomic.Bool
	closing    atomic.Bool
	workers    sync.WaitGroup // dispatch and webhook workers
	quiesce    sync.Once
	quiesceErr error
	once       sync.Once
}

type pusherBox struct{ p Pusher }

// New returns a Dispatcher over st.
func New(st store.Store, cfg Config) *Dispatcher {
	cfg.setDefaults()
	d := &Dispatcher{
		store:  st,
		cfg:    cfg,
		policy: policy{schedule: cfg.Schedule, ackTimeout: cfg.AckTimeout},
		log:    cfg.Logger.With("component", "delivery"),
		stop:   make(chan struct{}),
		seed:   maphash.MakeSeed(),
		hooks:  webhook.NewClient(cfg.Webhook),
	}
	d.targets.m = make(map[string]hookTarget)
	d.ops.log = d.log
	d.pool = newHookPool(cfg.WebhookQueue, cfg.WebhookPerHost)
	per := max(1, cfg.QueueSize/cfg.Workers)
	for i := 0; i < cfg.Workers; i++ {
		d.shards = append(d.shards, make(chan *store.Lease, per))
	}
	d.m = newMetrics(cfg.Metrics, d)
	return d
}

// SetPusher attaches the WebSocket side. Until it is set (or with nil),
// no event is considered to have a WebSocket subscriber.
func (d *Dispatcher) SetPusher(p Pusher) { d.pusher.Store(&pusherBox{p}) }

func (d *Dispatcher) now() time.Time { return d.cfg.Now() }

// Start launches the dispatch and webhook workers and has the event log
// hand out attempts. On a read-only store it starts nothing: no attempt
// could be recorded, so none is made until the store reopens.
func (d *Dispatcher) Start() {
	if d.store.ReadOnly() {
		d.log.Warn("the store is read-only: no delivery attempts until it reopens for writing")
		return
	}
	d.started.Store(true)
	for _, q := range d.shards {
		q := q
		d.goWorker(func() { d.dispatchLoop(q) })
	}
	for i := 0; i < d.cfg.WebhookWorkers; i++ {
		d.goWorker(d.hookLoop)
	}
	d.store.StartDeliveries(store.DeliveryConfig{
		Deliver:         d.enqueue,
		FirstDelay:      d.cfg.Schedule[0],
		Retention:       d.cfg.Retention,
		FailedRetention: d.cfg.FailedRetention,
		Now:             d.cfg.Now,
		Logger:          d.cfg.Logger,
	})
}

func (d *Dispatcher) goWorker(f func()) {
	d.workers.Add(1)
	go func() { defer d.workers.Done(); f() }()
}

// Quiesce stops making attempts: the log stops handing them out, queued
// leases are given back (they resume at the next start), and the webhook
// requests in flight finish (bounded by the webhook timeout) until ctx
// ends, their outcomes recorded. Acks, redelivers and the outcomes of
// WebSocket frames still held are recorded until the store closes. It is
// idempotent.
func (d *Dispatcher) Quiesce(ctx context.Context) error {
	d.quiesce.Do(func() {
		d.closing.Store(true)
		d.store.StopDeliveries(ctx)
		close(d.stop)
		for _, j := range d.pool.close() {
			d.store.Release(j.lease, 0)
		}
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
		for _, q := range d.shards {
			for len(q) > 0 {
				d.store.Release(<-q, 0)
			}
		}
	})
	return d.quiesceErr
}

// Shutdown quiesces (see Quiesce) and closes the webhook client. The
// outcomes already handed to the log are recorded when the store closes.
// It is idempotent.
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	err := d.Quiesce(ctx)
	d.once.Do(d.hooks.Close)
	return err
}

// enqueue takes a lease for its account's dispatch worker (one account's
// events stay in order); false when that queue is full (the log defers it).
func (d *Dispatcher) enqueue(l *store.Lease) bool {
	if d.closing.Load() {
		return false
	}
	q := d.shards[maphash.String(d.seed, l.AccountID)%uint64(len(d.shards))]
	select {
	case q <- l:
		return true
	default:
		return false
	}
}

// StableBound returns an event id below which every event of the account
// is durable and no other can appear: replay stops before it.
func (d *Dispatcher) StableBound(accountID string) string { return d.store.StableBound(accountID) }

// InFlight reports whether the event is still in the delivery pipeline
// (being stored, queued or attempted): a live push of it may still come.
func (d *Dispatcher) InFlight(evtID string) bool { return d.store.InFlight(evtID) }

// Replayed records that a replay wrote a pending event of the account to a
// connection that does not ack: a successful WebSocket attempt at at
// (PROTOCOL.md §6, settling).
func (d *Dispatcher) Replayed(accountID, evtID string, at time.Time) {
	if d.ready() == nil {
		d.store.Submit(accountID, evtID, d.change(&outcome{kind: kindReplayed, startMs: at.UnixMilli()}), nil)
	}
}

// Ack records a client's WebSocket ack of an event of the account; it
// returns once it is durable. A pending event becomes delivered
// (PROTOCOL.md §6), and so does a failed one (the client has it).
func (d *Dispatcher) Ack(accountID, evtID string) error {
	if err := d.ready(); err != nil {
		return err
	}
	return d.store.Update(accountID, evtID, d.change(&outcome{kind: kindAck}))
}

// AckPulled records acks made through the pull API (POST
// /v1/events/ack) of events of the account and returns, once they are
// durable, each one's error (store.ErrNotFound for an id of no event of
// the account). A pending or failed event becomes delivered via "pull"
// (an event awaiting a WebSocket ack, via the WebSocket attempt it
// settles). The acks are submitted together, so they share commits.
func (d *Dispatcher) AckPulledAll(accountID string, evtIDs []string) []error {
	errs := make([]error, len(evtIDs))
	if err := d.ready(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	change := d.change(&outcome{kind: kindAck, channel: store.ChannelPull})
	var wg sync.WaitGroup
	wg.Add(len(evtIDs))
	for i, id := range evtIDs {
		d.store.Submit(accountID, id, change, func(_, _ store.EventState, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	return errs
}

// Redeliver starts a new delivery cycle for an event of the account: the
// schedule restarts now. It returns once that is durable.
func (d *Dispatcher) Redeliver(accountID, evtID string) error {
	if err := d.ready(); err != nil {
		return err
	}
	if _, err := d.store.GetEventState(accountID, evtID); err != nil {
		return err
	}
	return d.store.Update(accountID, evtID, d.change(&outcome{kind: kindRedeliver}))
}

// ready reports why changes cannot be recorded now (nil when they can).
// Acks, redelivers and replays are recorded while the node drains (until
// the store closes, which then refuses them itself): an ack lost in that
// window would have the event sent again after the restart.
func (d *Dispatcher) ready() error {
	if d.store.ReadOnly() {
		return store.ErrReadOnly // nothing runs on a read-only store (see Start)
	}
	return nil
}

// change turns an outcome into the log's pure state transition.
func (d *Dispatcher) change(o *outcome) store.Change {
	return func(st store.EventState, nowMs int64) (store.EventState, *store.Attempt) {
		return d.policy.apply(st, o, nowMs)
	}
}

// record ends a lease with its outcome, counting it in the metrics.
func (d *Dispatcher) record(l *store.Lease, o *outcome) {
	if o.kind == kindAttempt {
		d.m.attempt(o.channel, o.ok)
	}
	evID, acc, inbox := l.Event.ID, l.Event.AccountID, l.Event.InboxID
	d.store.Record(l, d.change(o), func(old, nw store.EventState, err error) {
		if err == nil && nw.Status == store.StatusFailed && old.Status != store.StatusFailed {
			d.m.failed.Inc()
			d.ops.eventFailed(&store.Event{ID: evID, AccountID: acc, InboxID: inbox}, nw)
		}
	})
}

func (d *Dispatcher) dispatchLoop(q chan *store.Lease) {
	for {
		select {
		case <-d.stop:
			return
		case l := <-q:
			d.attempt(l)
		}
	}
}

// attempt runs one delivery attempt of a lease: it chooses the channel
// (PROTOCOL.md §6) and records the outcome (webhook attempts record from
// the webhook pool, held WebSocket frames once their holds end).
func (d *Dispatcher) attempt(l *store.Lease) {
	if !d.store.Ready(l) {
		return // nothing to attempt: the log resolved it
	}
	st, ev := l.State, &l.Event
	if st.AwaitingAck {
		d.record(l, &outcome{kind: kindAckTimeout})
		return
	}
	now := d.now()
	o := &outcome{kind: kindAttempt, n: st.Attempts + 1, cycle: st.CycleStart, startMs: now.UnixMilli()}
	// The channel is chosen afresh (PROTOCOL.md §6): a matching connection,
	// else the webhook, else none; after an ack timeout the webhook first
	// when one applies.
	if st.PreferWebhook {
		url, secret, ok := d.lookup(l)
		if !ok {
			return
		}
		if url != "" {
			d.toWebhook(l, o, url, secret)
			return
		}
	}
	if pb := d.pusher.Load(); pb != nil && pb.p != nil {
		res, later := pb.p.Push(ev, o.n, now, func(r PushResult) { d.pushed(l, o, now, r) })
		if later {
			return // pushed records the attempt once the result is in
		}
		if res.Matched > 0 {
			d.record(l, d.wsOutcome(o, now, res))
			return
		}
	}
	d.noSocket(l, o)
}

// pushed finishes an attempt whose push result came later (frames held
// by subscribing connections; in a cluster, the other nodes' answers):
// written or not to a matching connection, else the webhook.
func (d *Dispatcher) pushed(l *store.Lease, o *outcome, start time.Time, r PushResult) {
	if r.Matched > 0 {
		d.record(l, d.wsOutcome(o, start, r))
		return
	}
	d.noSocket(l, o)
}

// noSocket continues an attempt that found no matching connection: the
// webhook when one applies, else the attempt fails (channel none).
func (d *Dispatcher) noSocket(l *store.Lease, o *outcome) {
	url, secret, ok := d.lookup(l)
	if !ok {
		return
	}
	if url == "" {
		o.channel = store.ChannelNone
		o.errText = "no WebSocket subscribed and no webhook configured"
		d.record(l, o)
		return
	}
	d.toWebhook(l, o, url, secret)
}

// lookup returns the webhook target of the lease's inbox; false when the
// settings could not be read (the lease is given back after a pause, so a
// lasting error is not a hot loop).
func (d *Dispatcher) lookup(l *store.Lease) (url, secret string, ok bool) {
	url, secret, err := d.webhookTarget(l.Event.AccountID, l.Event.InboxID)
	if err != nil {
		d.log.Error("cannot read webhook settings", "event", l.EventID, "error", err)
		time.AfterFunc(store.ErrorBackoff, func() { d.store.Release(l, 0) })
		return "", "", false
	}
	return url, secret, true
}

func (d *Dispatcher) toWebhook(l *store.Lease, o *outcome, url, secret string) {
	hj := &hookJob{lease: l, o: o, url: url, secret: secret, host: hostOf(url)}
	if !d.pool.submit(hj) {
		d.m.deferred.Inc()
		d.store.Release(l, 0)
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
	if !r.At.IsZero() && r.Written > 0 {
		o.startMs = r.At.UnixMilli()
	}
	return o
}

// webhookTarget returns the URL and secret that apply to an inbox: its
// own, else the account's; "" when neither is set. Answers are cached
// until the store's settings generation moves (any inbox or webhook
// change), so a steady stream of attempts does not re-read settings.
func (d *Dispatcher) webhookTarget(accountID, inboxID string) (url, secret string, err error) {
	gen := d.store.SettingsGen()
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
	in, err := d.store.GetInbox(accountID, inboxID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", "", err
	}
	if err == nil && in.WebhookURL != "" {
		return in.WebhookURL, in.WebhookSecret, nil
	}
	w, err := d.store.GetWebhook(accountID)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return w.URL, w.Secret, nil
}
