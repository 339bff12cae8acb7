// Package pull holds the waiters of the pull API (GET /v1/events/stream
// and the MCP tool wait_for_email): requests that found no event after
// their cursor and wait for one, bounded in time and in number.
//
// A waiter costs a small struct and a runtime timer, never a goroutine:
// the hub is told of newly stored events (Hub.Stored, from the event
// log's OnStored) and wakes the waiters they match through a callback
// that must not block; the waiter's owner then reads the log again and
// answers.
//
// # The no-missed-wake protocol
//
// An owner reads the log and only then arms its waiter, so an event
// stored between the read and the arming must not be lost. The waiter is
// therefore registered (Add) before the first read, in the busy state:
// an event that matches a busy waiter marks it dirty, and Arm refuses to
// arm a dirty waiter (ArmRetry: read again). Only an armed waiter is
// woken. So every event stored after Add either marks the waiter dirty
// or wakes it.
//
// # Concurrency
//
// Every method is safe for concurrent use; one mutex guards the registry
// and the waiters' states. Wake callbacks are called without it. Stored
// runs on the event log's storing path: it only looks up the accounts of
// the batch and calls the (non-blocking) callbacks.
package pull

import (
	"errors"
	"sync"
	"time"

	"github.com/mailwire/mailwire/store"
)

// Errors of Add.
var (
	// ErrTooMany: the account (or the server) holds as many waiters as
	// allowed.
	ErrTooMany = errors.New("too many held requests")
	// ErrDraining: the server is shutting down.
	ErrDraining = errors.New("draining")
)

// Config bounds the hub.
type Config struct {
	// MaxPerAccount is the most waiters one account may hold. Default 10.
	MaxPerAccount int
	// MaxTotal is the most waiters in all. Default 10,000.
	MaxTotal int
}

// Defaults of Config.
const (
	DefaultMaxPerAccount = 10
	DefaultMaxTotal      = 10000
)

type state uint8

const (
	stateBusy  state = iota + 1 // the owner is reading or answering
	stateArmed                  // waiting for an event or its deadline
	stateDone                   // answered or given up: out of the hub
)

// Waiter is one held request. Its owner fills the exported fields before
// Add and does not change them afterwards.
type Waiter struct {
	AccountID string
	// Match reports whether an event of this inbox and type is one the
	// waiter waits for (nil: every event of the account).
	Match func(inbox, typ string) bool
	// Deadline ends the wait.
	Deadline time.Time
	// Wake is told to act: final when the deadline passed or the hub
	// drains (answer what there is), else an event matched (read again).
	// It must not block; the waiter is busy when it is called.
	Wake func(final bool)

	// under Hub.mu
	st      state
	dirty   bool
	hurry   bool // answer at the next Arm (Hurry on a busy waiter)
	timer   *time.Timer
	wokenAt time.Time
}

// WokenAt is when an event last woke the waiter (zero when none did);
// owners use it to measure how long the answer took.
func (w *Waiter) WokenAt(h *Hub) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.wokenAt
}

// Hub is the registry of waiters.
type Hub struct {
	cfg Config

	mu        sync.Mutex
	byAccount map[string][]*Waiter
	total     int
	draining  bool
}

// New returns an empty hub.
func New(cfg Config) *Hub {
	if cfg.MaxPerAccount <= 0 {
		cfg.MaxPerAccount = DefaultMaxPerAccount
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxTotal
	}
	return &Hub{cfg: cfg, byAccount: make(map[string][]*Waiter)}
}

// Add registers w, busy (its owner is about to read): ErrTooMany past the
// caps, ErrDraining once Drain was called.
func (h *Hub) Add(w *Waiter) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.draining:
		return ErrDraining
	case h.total >= h.cfg.MaxTotal, len(h.byAccount[w.AccountID]) >= h.cfg.MaxPerAccount:
		return ErrTooMany
	}
	w.st, w.dirty, w.hurry = stateBusy, false, false
	h.byAccount[w.AccountID] = append(h.byAccount[w.AccountID], w)
	h.total++
	return nil
}

// ArmResult is what Arm did.
type ArmResult uint8

// Arm results.
const (
	// Armed: the waiter waits; Wake will be called.
	Armed ArmResult = iota + 1
	// Retry: a matching event was stored since the owner's read: read
	// again (the waiter stays busy).
	Retry
	// Final: the deadline has passed or the hub drains: answer what there
	// is now (the waiter stays busy; call Done after).
	Final
	// Gone: the waiter was cancelled (its client left).
	Gone
)

// Arm makes a busy waiter wait (see ArmResult).
func (h *Hub) Arm(w *Waiter) ArmResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case w.st != stateBusy:
		return Gone
	case w.dirty:
		w.dirty = false
		return Retry
	case h.draining, w.hurry:
		return Final
	}
	d := time.Until(w.Deadline)
	if d <= 0 {
		return Final
	}
	w.st = stateArmed
	if w.timer == nil {
		w.timer = time.AfterFunc(d, func() { h.fire(w) })
	} else {
		w.timer.Reset(d)
	}
	return Armed
}

// fire is w's deadline.
func (h *Hub) fire(w *Waiter) {
	h.mu.Lock()
	if w.st != stateArmed {
		h.mu.Unlock()
		return
	}
	w.st = stateBusy
	h.mu.Unlock()
	w.Wake(true)
}

// Hurry makes w answer now, with what there is: true when it was armed
// (it is busy now: the caller acts, as for a final Wake); false when its
// owner is busy with it (its next Arm answers Final) or it is gone.
func (h *Hub) Hurry(w *Waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch w.st {
	case stateArmed:
		w.st = stateBusy
		w.timer.Stop()
		return true
	case stateBusy:
		w.hurry = true
	}
	return false
}

// Done removes w (answered, or given up by its owner). Idempotent.
func (h *Hub) Done(w *Waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(w)
}

// Cancel removes w because its client went away; it reports whether the
// waiter was armed (false: its owner is busy with it and will find it
// gone).
func (h *Hub) Cancel(w *Waiter) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	armed := w.st == stateArmed
	h.removeLocked(w)
	return armed
}

func (h *Hub) removeLocked(w *Waiter) {
	if w.st == stateDone || w.st == 0 {
		return
	}
	w.st = stateDone
	if w.timer != nil {
		w.timer.Stop()
	}
	ws := h.byAccount[w.AccountID]
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(h.byAccount, w.AccountID)
	} else {
		h.byAccount[w.AccountID] = ws
	}
	h.total--
}

// Stored is the event log's OnStored: it wakes the armed waiters the
// events match and marks the busy ones dirty. It does not block.
func (h *Hub) Stored(evs []store.Event) {
	var wake []*Waiter
	now := time.Now()
	h.mu.Lock()
	if h.total == 0 {
		h.mu.Unlock()
		return
	}
	for i := range evs {
		ev := &evs[i]
		for _, w := range h.byAccount[ev.AccountID] {
			if w.Match != nil && !w.Match(ev.InboxID, ev.Type) {
				continue
			}
			switch w.st {
			case stateBusy:
				w.dirty = true
			case stateArmed:
				w.st = stateBusy
				w.timer.Stop()
				w.wokenAt = now
				wake = append(wake, w)
			}
		}
	}
	h.mu.Unlock()
	for _, w := range wake {
		w.Wake(false)
	}
}

// Drain makes every waiter answer now (Wake with final) and refuses new
// ones; Arm answers Final from then on.
func (h *Hub) Drain() {
	var wake []*Waiter
	h.mu.Lock()
	h.draining = true
	for _, ws := range h.byAccount {
		for _, w := range ws {
			if w.st == stateArmed {
				w.st = stateBusy
				w.timer.Stop()
				wake = append(wake, w)
			}
		}
	}
	h.mu.Unlock()
	for _, w := range wake {
		w.Wake(true)
	}
}

// Held is the number of waiters (busy or armed).
func (h *Hub) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}
