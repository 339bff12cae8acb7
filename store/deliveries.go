package store

import (
	"context"
	"log/slog"
	"time"
)

// Lease is one delivery attempt to make. While it is out, its event is
// claimed: no other attempt of it runs (on any node, in a cluster) until
// the lease is recorded (Record) or given back (Release).
type Lease struct {
	AccountID, EventID string
	// Event is the event, with its payload rendered.
	Event Event
	// State is its delivery state when the lease was handed out: pending,
	// with a next attempt due (or AwaitingAck, the ack deadline passed).
	State EventState
	// DueMs is the due time that brought it (Unix ms).
	DueMs int64
	// Fresh: the event was just stored and has its initial state.
	Fresh bool

	// Token is the implementation's handle on the lease (callers leave
	// it alone).
	Token any
}

// Change is a pure state transition: the new state for the current one at
// nowMs (Unix ms), and the attempt record to keep (nil: none). The
// delivery package makes them (transition.go holds the rules); an
// implementation may call one more than once (compare-and-set retries), so
// it must not have side effects.
type Change func(st EventState, nowMs int64) (EventState, *Attempt)

// Recorded is told the outcome of a Record or Update: the state written
// (and the one it replaced), or why nothing was.
type Recorded func(old, nw EventState, err error)

// DeliveryConfig configures StartDeliveries.
type DeliveryConfig struct {
	// Deliver takes a lease to attempt; false when it cannot now (its
	// queue is full): the log offers it again later (policy: defer).
	Deliver func(*Lease) bool
	// FirstDelay is the schedule's first delay: a new event's first
	// attempt is due this long after it is stored.
	FirstDelay time.Duration
	// Retention and FailedRetention: how long delivered and failed events
	// are kept (pending events are never deleted).
	Retention, FailedRetention time.Duration
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Deliveries is the delivery side of the event log: it hands out due
// attempts, applies state transitions durably, and keeps the schedule.
// The dispatcher (package delivery) decides each attempt's channel and
// outcome; this interface is where its decisions become durable.
type Deliveries interface {
	// StartDeliveries begins handing out leases: each new event once it is
	// durable (an account's events in id order) when FirstDelay is 0, and
	// every attempt that falls due.
	StartDeliveries(cfg DeliveryConfig)
	// StopDeliveries stops handing out leases (Record and Update still
	// work until Close). Idempotent.
	StopDeliveries(ctx context.Context)
	// Record applies change to the leased event's state durably and ends
	// the lease; done (when not nil) is told the outcome. It does not
	// block on the disk.
	Record(l *Lease, change Change, done Recorded)
	// Release ends a lease without an outcome; the event is offered again
	// at dueMs (its current due time when 0).
	Release(l *Lease, dueMs int64)
	// Update applies change to an event of the account without a lease
	// (an ack, a redeliver, a replay that settled it) and returns once it
	// is durable; ErrNotFound for an unknown event.
	Update(accountID, evtID string, change Change) error
	// Submit is Update without waiting (done, when not nil, is told).
	Submit(accountID, evtID string, change Change, done Recorded)
	// InFlight reports whether evtID is being stored or attempted by this
	// node: a live push of it may still come.
	InFlight(evtID string) bool
	// DeliveryStats is a snapshot of the delivery side's figures.
	DeliveryStats() DeliveryStats
	// StableBound returns an event id below which every event of the
	// account is durable and none can still appear (a reader that stops
	// below it and resumes from its last event misses nothing).
	StableBound(accountID string) string
}

// DeliveryStats are the delivery side's figures for the operator view
// (each read on its own: the snapshot is not atomic).
type DeliveryStats struct {
	// InFlight counts the events claimed on this node (being stored,
	// queued or attempted).
	InFlight int
	// Backlog counts outcomes waiting to be written; BacklogCap bounds it.
	Backlog, BacklogCap int
	// Stored counts events stored through this node; Expired those
	// removed by retention.
	Stored, Expired uint64
}
