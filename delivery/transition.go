package delivery

import (
	"time"

	"github.com/mailwire/mailwire/store"
)

// outcome is what happened to one event; the writer applies it to the
// event's stored state with apply.
type outcome struct {
	kind      outcomeKind
	accountID string
	evtID     string
	// attempt fields (kindAttempt)
	n        int   // attempt number (1-based, over all cycles)
	cycle    int   // CycleStart when the attempt started
	startMs  int64 // when the attempt started
	channel  string
	ok       bool
	awaitAck bool // ok on WebSocket, but an ack is required
	status   int
	errText  string
	duration time.Duration
	// claimed: the writer releases the event's claim after committing.
	claimed bool
	// dueMs is the due entry that brought the event (kindRepair).
	dueMs int64
	// eventGone (kindRepair): the event record is missing, so its state
	// and due entry are deleted.
	eventGone bool
	// done, when set, receives nil once the outcome is durable.
	done chan error
}

type outcomeKind uint8

const (
	kindAttempt    outcomeKind = iota + 1 // an attempt finished
	kindAck                               // a client acked the event
	kindAckTimeout                        // the ack deadline passed
	kindRedeliver                         // start a new cycle now
	kindRepair                            // drop a stale due entry
)

// policy is the schedule configuration apply needs.
type policy struct {
	schedule   []time.Duration // delay before attempt i of a cycle, from the previous one
	ackTimeout time.Duration
}

// apply returns the new state after o, and the attempt record to store
// (nil when none). It is a pure function: the writer calls it with the
// current stored state (or the state produced earlier in the same batch).
func (p policy) apply(st store.EventState, o *outcome, nowMs int64) (store.EventState, *store.Attempt) {
	switch o.kind {
	case kindAttempt:
		return p.applyAttempt(st, o, nowMs)
	case kindAck:
		if st.AckedAt == 0 {
			st.AckedAt = nowMs
		}
		st.LastAckAt = nowMs
		if !st.AwaitingAck {
			// Either no ack is required, or the ack came before the
			// outcome of the attempt it acks (LastAckAt settles that).
			return st, nil
		}
		// The ack resolves the attempt that was waiting for it.
		a := &store.Attempt{N: st.Attempts, At: time.UnixMilli(st.LastAt).UTC(), Channel: store.ChannelWebSocket,
			OK: true, DurationMs: nowMs - st.LastAt}
		st.AwaitingAck = false
		st.Status = store.StatusDelivered
		st.DeliveredVia = store.ChannelWebSocket
		st.NextAt = 0
		return st, a
	case kindAckTimeout:
		if !st.AwaitingAck {
			return st, nil // acked meanwhile
		}
		a := &store.Attempt{N: st.Attempts, At: time.UnixMilli(st.LastAt).UTC(), Channel: store.ChannelWebSocket,
			OK: false, Error: "not acked within " + p.ackTimeout.String(), DurationMs: nowMs - st.LastAt}
		st.AwaitingAck = false
		p.scheduleNext(&st, st.LastAt, nowMs)
		return st, a
	case kindRedeliver:
		st.Status = store.StatusPending
		st.CycleStart = st.Attempts
		st.AwaitingAck = false
		st.NextAt = nowMs
		return st, nil
	case kindRepair:
		if st.Status != store.StatusPending {
			st.NextAt = 0
		}
		return st, nil
	}
	panic("BUG: unknown outcome kind")
}

func (p policy) applyAttempt(st store.EventState, o *outcome, nowMs int64) (store.EventState, *store.Attempt) {
	a := &store.Attempt{N: o.n, At: time.UnixMilli(o.startMs).UTC(), Channel: o.channel, OK: o.ok,
		HTTPStatus: o.status, Error: o.errText, DurationMs: o.duration.Milliseconds()}
	if o.n > st.Attempts {
		st.Attempts = o.n
	}
	st.LastAt = o.startMs
	stale := o.cycle != st.CycleStart // redelivered while this attempt ran
	switch {
	case o.ok && o.awaitAck && st.LastAckAt >= o.startMs:
		// A client acked this attempt's frame before its outcome reached
		// the writer: delivered.
		st.Status = store.StatusDelivered
		st.DeliveredVia = store.ChannelWebSocket
		st.AwaitingAck = false
		st.NextAt = 0
	case o.ok && o.awaitAck:
		a = nil // recorded when the ack comes or the deadline passes
		st.Status = store.StatusPending
		st.DeliveredVia = store.ChannelWebSocket
		st.AwaitingAck = true
		st.NextAt = o.startMs + p.ackTimeout.Milliseconds()
		if st.NextAt <= nowMs {
			st.NextAt = nowMs
		}
	case o.ok:
		st.Status = store.StatusDelivered
		st.DeliveredVia = o.channel
		st.AwaitingAck = false
		st.NextAt = 0
	case stale:
		// A redeliver asked for a fresh cycle while this attempt ran: the
		// cycle starts after it, at the time redeliver set.
		st.CycleStart = st.Attempts
		st.Status = store.StatusPending
	default:
		p.scheduleNext(&st, o.startMs, nowMs)
	}
	return st, a
}

// scheduleNext sets NextAt after a failed attempt that started at lastMs,
// or marks the event failed when the cycle's schedule is used up.
func (p policy) scheduleNext(st *store.EventState, lastMs, nowMs int64) {
	done := st.Attempts - st.CycleStart // attempts made in this cycle
	if done >= len(p.schedule) {
		st.Status = store.StatusFailed
		st.NextAt = 0
		return
	}
	st.Status = store.StatusPending
	next := lastMs + p.schedule[done].Milliseconds()
	if next < nowMs {
		next = nowMs
	}
	st.NextAt = next
}
