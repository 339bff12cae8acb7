package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
)

// deliveries is the Pebble event log's delivery side (Deliveries): the
// claims (inflight), the scheduler over the due index, the single writer
// of delivery state, and the retention sweep.
//
// Invariants:
//   - An event is claimed while it is anywhere in the pipeline: from
//     before its ingest commit until the writer has durably recorded the
//     outcome of its attempt (or the lease was released). The scheduler
//     never hands out a claimed event, so an event has at most one
//     attempt in flight.
//   - Nothing is handed out before the batch holding the event returned
//     from its synced commit (Pebble makes a batch readable before its
//     fsync ends).
//   - Every state change goes through the writer goroutine, which reads,
//     changes and writes the state in one place: no lost updates between
//     an attempt's outcome, an ack and a redeliver.
//   - The due index holds exactly one key per event with a next attempt;
//     the scheduler's scan cursor never passes an unclaimed due key.
type deliveries struct {
	db  *DB
	cfg DeliveryConfig
	log *slog.Logger
	m   *dlMetrics

	flights *inflight
	// releaseMu makes releasing new events and handing them out one step
	// (a commit report that returns later must not hand out its account's
	// later events first).
	releaseMu sync.Mutex
	sched     *scheduler
	w         *writer

	// clock is cfg.Now, read by the writer while start may set it.
	clock atomic.Pointer[func() time.Time]

	// watchers are told of released events (OnStored); copy on write.
	watchers atomic.Pointer[[]func([]Event)]
	watchMu  sync.Mutex

	// outbox guards sends to the writer against its end (see writer).
	outbox struct {
		sync.RWMutex
		closed bool
	}

	mu struct {
		sync.Mutex
		started bool
	}
	stop     chan struct{}
	wg       sync.WaitGroup // scheduler, sweeper
	spill    sync.WaitGroup // records waiting for room in the writer's queue
	writerWG sync.WaitGroup
	stopOnce sync.Once
	endOnce  sync.Once
}

// dlMetrics are the log's delivery metrics (docs/OPERATIONS.md).
type dlMetrics struct {
	set          *metrics.Set
	stored       *metrics.Counter
	scheduled    *metrics.Counter
	deferred     *metrics.Counter
	swept        *metrics.Counter
	writerCommit *metrics.PrometheusHistogram
}

func newDeliveries(db *DB) *deliveries {
	dl := &deliveries{db: db, flights: newInflight(), stop: make(chan struct{}),
		cfg: DeliveryConfig{Now: time.Now, Logger: db.log}, log: db.log.With("component", "delivery")}
	now := time.Now
	dl.clock.Store(&now)
	set := metrics.NewSet()
	dl.m = &dlMetrics{
		set:          set,
		stored:       set.NewCounter(promtext.Describe("mailwire_events_stored_total", "Events durably stored.")),
		scheduled:    set.NewCounter(promtext.Describe("mailwire_delivery_scheduled_total", "Delivery attempts handed to the dispatcher (leases).")),
		deferred:     set.NewCounter(promtext.Describe("mailwire_delivery_deferred_total", "Attempts given back because the dispatcher's queue was full (they run later).")),
		swept:        set.NewCounter(promtext.Describe("mailwire_events_expired_total", "Delivered or failed events deleted by the retention sweep.")),
		writerCommit: set.NewPrometheusHistogramExt(promtext.Describe("mailwire_delivery_state_commit_seconds", "Time to commit one synced batch of delivery state changes (attempts, acks)."), promtext.StorageBuckets),
	}
	set.NewGauge(promtext.Describe("mailwire_delivery_inflight", "Events with an attempt in flight (leased) or not yet released after their commit."), func() float64 { return float64(dl.flights.len()) })
	dl.sched = newScheduler(dl)
	dl.sched.log = dl.log
	dl.w = &writer{dl: dl, in: make(chan *record, 4*writerBatchMax), quit: make(chan struct{}), log: dl.log}
	set.NewGauge(promtext.Describe("mailwire_delivery_writer_backlog", "Delivery state changes waiting for the writer."), func() float64 { return float64(len(dl.w.in)) })
	if !db.readOnly {
		dl.writerWG.Add(1)
		go func() { defer dl.writerWG.Done(); dl.w.run() }()
	}
	return dl
}

func (dl *deliveries) now() time.Time { return (*dl.clock.Load())() }

// end stops everything (DB.Close): no lease goes out, the writer records
// what it was given and stops.
func (dl *deliveries) end() {
	dl.endOnce.Do(func() {
		dl.StopDeliveries(context.Background())
		dl.outbox.Lock()
		dl.outbox.closed = true
		dl.outbox.Unlock()
		dl.spill.Wait() // records waiting for room are in, or refused
		close(dl.w.quit)
		dl.writerWG.Wait()
	})
}

// StartDeliveries implements Deliveries. On a read-only store it starts
// nothing: no attempt could be recorded.
func (d *DB) StartDeliveries(cfg DeliveryConfig) { d.dl.start(cfg) }

func (dl *deliveries) start(cfg DeliveryConfig) {
	if dl.db.readOnly {
		dl.log.Warn("the store is read-only: no delivery attempts until it reopens for writing")
		return
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = dl.db.log
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.mu.started {
		panic("BUG: deliveries started twice")
	}
	dl.mu.started = true
	dl.cfg = cfg
	dl.clock.Store(&cfg.Now)
	dl.wg.Add(2)
	go func() { defer dl.wg.Done(); dl.sched.run(dl.stop) }()
	go func() { defer dl.wg.Done(); dl.sweepLoop(dl.stop) }()
}

// StopDeliveries implements Deliveries.
func (d *DB) StopDeliveries(ctx context.Context) { d.dl.StopDeliveries(ctx) }

func (dl *deliveries) StopDeliveries(context.Context) {
	dl.stopOnce.Do(func() {
		dl.releaseMu.Lock() // no committed call is handing out a lease
		dl.mu.Lock()
		dl.cfg.Deliver = nil // new events are no longer handed out
		dl.mu.Unlock()
		dl.releaseMu.Unlock()
		close(dl.stop)
		dl.wg.Wait()
	})
}

// deliverFunc is the current Deliver (nil before Start and after Stop)
// and the first attempt's delay.
func (dl *deliveries) deliverFunc() (func(*Lease) bool, time.Duration) {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.cfg.Deliver, dl.cfg.FirstDelay
}

// submit hands a record to the writer; false after Close (or on a
// read-only store): nothing is recorded. It does not block: when the
// writer is behind, a goroutine waits with the record (callers include
// nbio's poller, through held pushes' outcomes).
func (dl *deliveries) submit(r *record) bool {
	dl.outbox.RLock()
	if dl.outbox.closed || dl.db.readOnly {
		dl.outbox.RUnlock()
		return false
	}
	select {
	case dl.w.in <- r:
		dl.outbox.RUnlock()
		return true
	default:
	}
	dl.spill.Add(1) // under the read lock: end waits for it
	dl.outbox.RUnlock()
	go func() {
		defer dl.spill.Done()
		if !dl.submitWait(r) {
			dl.refuse(r)
		}
	}()
	return true
}

// submitWait is submit, waiting for room in the writer's queue.
func (dl *deliveries) submitWait(r *record) bool {
	dl.outbox.RLock()
	defer dl.outbox.RUnlock()
	if dl.outbox.closed || dl.db.readOnly {
		return false
	}
	dl.w.in <- r
	return true
}

// errClosedLog: the store is closing; the change was not recorded.
var errClosedLog = errors.New("the store is closing")

func (dl *deliveries) refuse(r *record) {
	err := errClosedLog
	if dl.db.readOnly {
		err = ErrReadOnly
	}
	if r.lease != nil {
		dl.flights.release(r.evtID)
	}
	if r.done != nil {
		r.done(EventState{}, EventState{}, err)
	}
	if r.wait != nil {
		r.wait <- err
	}
}

// Ready loads a leased event's state and payload, resolving what needs no
// attempt on the way: a due entry left by a state that moved on (read
// through a scan snapshot), a settled event, a state whose event is gone.
// false: nothing to attempt (the lease is ended). Fresh leases are ready.
func (d *DB) Ready(l *Lease) bool {
	if l.Fresh {
		return true
	}
	dl := d.dl
	st, err := d.GetEventState(l.AccountID, l.EventID)
	switch {
	case errors.Is(err, ErrNotFound):
		dl.repair(l, false)
		return false
	case err != nil:
		dl.log.Error("cannot read event state", "event", l.EventID, "error", err)
		dl.releaseLater(l)
		return false
	case st.Status != StatusPending || st.NextAt == 0:
		dl.repair(l, false)
		return false
	case st.NextAt != l.DueMs:
		// The scheduler's scan reads a snapshot: this due entry was
		// replaced after the scan began. The event is due at st.NextAt.
		d.Release(l, st.NextAt)
		return false
	}
	ev, err := d.GetEvent(l.EventID)
	switch {
	case errors.Is(err, ErrNotFound):
		// A state without its event (or message): delete it, or the
		// scheduler would pick it again and again.
		dl.repair(l, true)
		return false
	case err != nil:
		dl.log.Error("cannot read event", "event", l.EventID, "error", err)
		dl.releaseLater(l)
		return false
	}
	l.State, l.Event = st, ev
	return true
}

func (dl *deliveries) repair(l *Lease, eventGone bool) {
	r := &record{accountID: l.AccountID, evtID: l.EventID, lease: l, repair: true, dueMs: l.DueMs, eventGone: eventGone}
	if !dl.submit(r) {
		dl.refuse(r)
	}
}

// Record implements Deliveries.
func (d *DB) Record(l *Lease, change Change, done Recorded) {
	r := &record{accountID: l.AccountID, evtID: l.EventID, change: change, lease: l, done: done}
	if !d.dl.submit(r) {
		d.dl.refuse(r)
	}
}

// releaseLater gives a lease back after errorBackoff (a lasting read
// error must not turn into a hot loop of attempts).
func (dl *deliveries) releaseLater(l *Lease) {
	time.AfterFunc(ErrorBackoff, func() { dl.db.Release(l, 0) })
}

// ErrorBackoff is how long a lease that met an error (reading its state
// or settings) stays out before it is offered again.
const ErrorBackoff = time.Second

// Release implements Deliveries.
func (d *DB) Release(l *Lease, dueMs int64) {
	d.dl.flights.release(l.EventID)
	if dueMs == 0 {
		dueMs = l.DueMs
	}
	if dueMs != 0 {
		d.dl.sched.lower(dueKey(dueMs, l.EventID))
	}
}

// Update implements Deliveries.
func (d *DB) Update(accountID, evtID string, change Change) error {
	r := &record{accountID: accountID, evtID: evtID, change: change, wait: make(chan error, 1)}
	if !d.dl.submitWait(r) {
		d.dl.refuse(r)
	}
	return <-r.wait
}

// Submit implements Deliveries.
func (d *DB) Submit(accountID, evtID string, change Change, done Recorded) {
	r := &record{accountID: accountID, evtID: evtID, change: change, done: done}
	if !d.dl.submit(r) {
		d.dl.refuse(r)
	}
}

// InFlight implements Deliveries.
func (d *DB) InFlight(evtID string) bool { return d.dl.flights.claimed(evtID) }

// DeliveryStats implements Deliveries.
func (d *DB) DeliveryStats() DeliveryStats {
	dl := d.dl
	return DeliveryStats{InFlight: dl.flights.len(), Backlog: len(dl.w.in), BacklogCap: cap(dl.w.in),
		Stored: dl.m.stored.Get(), Expired: dl.m.swept.Get()}
}

// StableBound implements Deliveries.
func (d *DB) StableBound(accountID string) string { return d.dl.flights.stableBound(accountID) }

// Append stores new messages and their events in one durable step. It
// makes one event id per account (in order; see inflight), lets build
// turn them into the items to store, and returns once they are durable.
// Then each new event is handed out for its first attempt (when
// FirstDelay is 0 and deliveries run), an account's events in id order.
// build must not fail after it started using the ids unless it returns
// an error: the ids are released either way. Append sets each item's
// State (its first attempt is due DeliveryConfig.FirstDelay after the
// event).
func (d *DB) Append(accounts []string, build func(evtIDs []string) ([]Inbound, error)) (err error) {
	dl := d.dl
	evtIDs := dl.flights.newEvents(accounts)
	evts := make([]Event, len(accounts))
	for i := range evts {
		evts[i] = Event{ID: evtIDs[i], AccountID: accounts[i]}
	}
	// From here on the claims are resolved exactly once, whatever happens
	// (a panic from the store included): an unresolved claim would hold
	// up the account's later events for good.
	resolved := false
	defer func() {
		if v := recover(); v != nil {
			if !resolved {
				dl.committed(evts, 0, fmt.Errorf("cannot store message: %v", v))
			}
			panic(v)
		}
	}()
	// The first due time is computed once, here: committed hands out (or
	// points the scheduler at) exactly the due key stored.
	_, delay := dl.deliverFunc()
	items, err := build(evtIDs)
	if err == nil && len(items) != len(accounts) {
		err = fmt.Errorf("BUG: %d items for %d event ids", len(items), len(accounts))
	}
	for i := range items {
		if err == nil && (items[i].Event.ID != evtIDs[i] || items[i].Event.AccountID != accounts[i]) {
			err = fmt.Errorf("BUG: item %d is event %s of %s, not %s of %s", i, items[i].Event.ID, items[i].Event.AccountID, evtIDs[i], accounts[i])
		}
	}
	if err == nil {
		for i := range items {
			evts[i] = items[i].Event
			items[i].State = firstState(&items[i].Event, delay)
		}
		err = d.StoreInbound(items)
	}
	resolved = true
	dl.committed(evts, delay, err)
	return err
}

// firstState is a new event's delivery state: pending, its first attempt
// due delay after the event's own time (the scheduler's cursor relies on
// exact due keys, so Append and committed compute it alike).
func firstState(ev *Event, delay time.Duration) EventState {
	return EventState{InboxID: ev.InboxID, Type: ev.Type, Status: StatusPending, NextAt: ev.OccurredAt().UnixMilli() + delay.Milliseconds()}
}

// committed resolves new events' claims after their commit (err == nil:
// durable) and hands out those now released.
func (dl *deliveries) committed(evts []Event, delay time.Duration, err error) {
	dl.releaseMu.Lock()
	defer dl.releaseMu.Unlock()
	released := dl.flights.committed(evts, err == nil)
	if err == nil {
		dl.m.stored.Add(len(evts))
	}
	deliver, _ := dl.deliverFunc()
	for i := range released {
		ev := released[i]
		st := firstState(&ev, delay) // the state Append stored
		dueMs := st.NextAt
		if deliver == nil || delay > 0 || !deliver(&Lease{AccountID: ev.AccountID, EventID: ev.ID, Event: ev, State: st, DueMs: dueMs, Fresh: true}) {
			dl.flights.release(ev.ID)
			dl.sched.lower(dueKey(dueMs, ev.ID))
		}
	}
	if len(released) > 0 {
		if fns := dl.watchers.Load(); fns != nil {
			for _, fn := range *fns {
				fn(released)
			}
		}
	}
}

// OnStored implements EventLog.
func (d *DB) OnStored(fn func([]Event)) {
	dl := d.dl
	dl.watchMu.Lock()
	defer dl.watchMu.Unlock()
	var fns []func([]Event)
	if old := dl.watchers.Load(); old != nil {
		fns = append(fns, *old...)
	}
	fns = append(fns, fn)
	dl.watchers.Store(&fns)
}
