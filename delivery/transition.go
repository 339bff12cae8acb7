package delivery

import (
	"time"

	"github.com/mailwire/mailwire/store"
)

// outcome is what happened to one event; the event log applies it to the
// event's stored state with apply (through Dispatcher.change).
type outcome struct {
	kind outcomeKind
	// attempt fields (kindAttempt)
	n        int    // attempt number (1-based, over all cycles)
	cycle    int    // CycleStart when the attempt started
	startMs  int64  // when the attempt started
	channel  string // the attempt's; for kindAck the ack's ("" = websocket)
	ok       bool
	awaitAck bool // ok on WebSocket, but an ack is required
	status   int
	errText  string
	duration time.Duration
}

// ackChannel is the channel an ack came through (kindAck).
func (o *outcome) ackChannel() string {
	if o.channel == "" {
		return store.ChannelWebSocket
	}
	return o.channel
}

type outcomeKind uint8

const (
	kindAttempt    outcomeKind = iota + 1 // an attempt finished
	kindAck                               // a client acked the event (WebSocket frame or POST /v1/events/ack)
	kindAckTimeout                        // the ack deadline passed
	kindRedeliver                         // start a new cycle now
	kindReplayed                          // a replay wrote the event to a connection that does not ack
)

// policy is the schedule configuration apply needs.
type policy struct {
	schedule   []time.Duration // delay before attempt i of a cycle, from the previous one
	ackTimeout time.Duration
}

// apply returns the new state after o, and the attempt record to store
// (nil when none). It is a pure function: the event log calls it with the
// current stored state (possibly more than once: compare-and-set).
func (p policy) apply(st store.EventState, o *outcome, nowMs int64) (store.EventState, *store.Attempt) {
	switch o.kind {
	case kindAttempt:
		return p.applyAttempt(st, o, nowMs)
	case kindAck:
		if st.AckedAt == 0 {
			st.AckedAt = nowMs
		}
		st.LastAckAt = nowMs
		switch st.Status {
		case store.StatusFailed:
			// The ack is the truth: a client has the event, whatever the
			// schedule concluded (a pull consumer that runs every few
			// minutes finds its events failed before it acks them).
			settle(&st, o.ackChannel())
			return st, nil
		case store.StatusPending:
		default:
			return st, nil
		}
		// An ack of a pending event settles it (PROTOCOL.md §6): the
		// client has it, whatever brought it (a live push, a replay, an
		// earlier attempt, a pull); the remaining retries are cancelled.
		// It may also come before the outcome of the attempt it acks
		// (LastAckAt settles that attempt in applyAttempt).
		if st.AwaitingAck {
			// The ack resolves the WebSocket attempt waiting for it.
			a := &store.Attempt{N: st.Attempts, At: time.UnixMilli(st.LastAt).UTC(), Channel: store.ChannelWebSocket,
				OK: true, DurationMs: nowMs - st.LastAt}
			settle(&st, store.ChannelWebSocket)
			return st, a
		}
		settle(&st, o.ackChannel())
		return st, nil
	case kindAckTimeout:
		if !st.AwaitingAck {
			return st, nil // acked meanwhile
		}
		a := &store.Attempt{N: st.Attempts, At: time.UnixMilli(st.LastAt).UTC(), Channel: store.ChannelWebSocket,
			OK: false, Error: "not acked within " + p.ackTimeout.String(), DurationMs: nowMs - st.LastAt}
		st.AwaitingAck = false
		st.PreferWebhook = true // the next attempt goes to the webhook if one applies
		p.scheduleNext(&st, st.LastAt, nowMs)
		return st, a
	case kindReplayed:
		// A replay wrote the event to a connection that does not ack: a
		// successful WebSocket attempt if it was still pending.
		if st.Status != store.StatusPending {
			return st, nil
		}
		if st.AwaitingAck {
			// The replay resent attempt n's frame (awaiting its ack): that
			// attempt succeeded, as for an ack.
			a := &store.Attempt{N: st.Attempts, At: time.UnixMilli(st.LastAt).UTC(), Channel: store.ChannelWebSocket,
				OK: true, DurationMs: o.startMs - st.LastAt}
			settle(&st, store.ChannelWebSocket)
			return st, a
		}
		st.Attempts++
		st.LastAt = o.startMs
		a := &store.Attempt{N: st.Attempts, At: time.UnixMilli(o.startMs).UTC(), Channel: store.ChannelWebSocket, OK: true}
		settle(&st, store.ChannelWebSocket)
		return st, a
	case kindRedeliver:
		st.Status = store.StatusPending
		st.CycleStart = st.Attempts
		st.AwaitingAck = false
		st.PreferWebhook = false
		st.NextAt = nowMs
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
	st.PreferWebhook = false          // it applied to this attempt only
	stale := o.cycle != st.CycleStart // redelivered while this attempt ran
	switch {
	case stale:
		// A redeliver asked for a fresh cycle while this attempt ran: the
		// cycle starts after it, at the time redeliver set.
		st.CycleStart = st.Attempts
		st.Status = store.StatusPending
		st.AwaitingAck = false
	case st.Status != store.StatusPending:
		// Settled while the attempt ran (an ack, a replay): recorded, and
		// the event stays as it is.
		st.AwaitingAck = false
	case o.ok && o.awaitAck && st.LastAckAt >= o.startMs:
		// A client acked this attempt's frame before its outcome reached
		// the writer: delivered.
		settle(&st, store.ChannelWebSocket)
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
		settle(&st, o.channel)
	default:
		p.scheduleNext(&st, o.startMs, nowMs)
	}
	return st, a
}

// settle marks the event delivered via channel: nothing more is
// scheduled.
func settle(st *store.EventState, channel string) {
	st.Status = store.StatusDelivered
	st.DeliveredVia = channel
	st.AwaitingAck = false
	st.PreferWebhook = false
	st.NextAt = 0
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
