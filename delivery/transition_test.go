package delivery

import (
	"testing"
	"time"

	"github.com/mailwire/mailwire/store"
)

func TestPolicyApply(t *testing.T) {
	p := policy{
		schedule:   []time.Duration{0, 30 * time.Second, time.Minute},
		ackTimeout: 10 * time.Second,
	}
	const now = int64(1_000_000)
	pending := store.EventState{Status: store.StatusPending, NextAt: now}
	f := func(name string, st store.EventState, o outcome, at int64, want store.EventState, wantAttempt bool) {
		t.Helper()
		got, a := p.apply(st, &o, at)
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
		if (a != nil) != wantAttempt {
			t.Errorf("%s: attempt record %v, want one: %v", name, a, wantAttempt)
		}
	}
	attempt := func(n int, ok bool, ch string) outcome {
		return outcome{kind: kindAttempt, n: n, startMs: now, channel: ch, ok: ok}
	}

	f("first attempt ok on websocket", pending, attempt(1, true, store.ChannelWebSocket), now,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now, DeliveredVia: store.ChannelWebSocket}, true)
	f("first attempt failed: next after schedule[1]", pending, attempt(1, false, store.ChannelNone), now+5,
		store.EventState{Status: store.StatusPending, Attempts: 1, LastAt: now, NextAt: now + 30_000}, true)
	f("a slow attempt never schedules in the past", pending, attempt(1, false, store.ChannelWebhook), now+40_000,
		store.EventState{Status: store.StatusPending, Attempts: 1, LastAt: now, NextAt: now + 40_000}, true)
	two := store.EventState{Status: store.StatusPending, Attempts: 2, LastAt: now - 30_000, NextAt: now}
	f("last attempt of the schedule failed: failed", two, attempt(3, false, store.ChannelWebhook), now,
		store.EventState{Status: store.StatusFailed, Attempts: 3, LastAt: now}, true)
	f("webhook ok", two, attempt(3, true, store.ChannelWebhook), now,
		store.EventState{Status: store.StatusDelivered, Attempts: 3, LastAt: now, DeliveredVia: store.ChannelWebhook}, true)

	// Ack timeout: the websocket write awaits an ack until the deadline.
	ws := attempt(1, true, store.ChannelWebSocket)
	ws.awaitAck = true
	awaiting := store.EventState{Status: store.StatusPending, Attempts: 1, LastAt: now, NextAt: now + 10_000, DeliveredVia: store.ChannelWebSocket, AwaitingAck: true}
	f("websocket written, awaiting ack", pending, ws, now, awaiting, false)
	f("ack delivers", awaiting, outcome{kind: kindAck}, now+100,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now, DeliveredVia: store.ChannelWebSocket, AckedAt: now + 100, LastAckAt: now + 100}, true)
	f("ack deadline passed: next attempt per schedule, to the webhook", awaiting, outcome{kind: kindAckTimeout}, now+10_000,
		store.EventState{Status: store.StatusPending, Attempts: 1, LastAt: now, NextAt: now + 30_000, DeliveredVia: store.ChannelWebSocket, PreferWebhook: true}, true)
	preferring := store.EventState{Status: store.StatusPending, Attempts: 1, LastAt: now - 30_000, NextAt: now, PreferWebhook: true}
	f("the attempt after an ack timeout clears the preference", preferring, attempt(2, false, store.ChannelWebhook), now,
		store.EventState{Status: store.StatusPending, Attempts: 2, LastAt: now, NextAt: now + 60_000}, true)

	// Settling (PROTOCOL.md §6): an ack or a replay write of a pending event
	// delivers it and cancels the retries.
	retrying := store.EventState{Status: store.StatusPending, Attempts: 1, LastAt: now - 1000, NextAt: now + 29_000}
	f("ack of a pending event delivers it", retrying, outcome{kind: kindAck}, now,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now - 1000, DeliveredVia: store.ChannelWebSocket, AckedAt: now, LastAckAt: now}, false)
	f("a replay write of a pending event is a successful attempt", retrying, outcome{kind: kindReplayed, startMs: now}, now+1,
		store.EventState{Status: store.StatusDelivered, Attempts: 2, LastAt: now, DeliveredVia: store.ChannelWebSocket}, true)
	f("a replay write of an event awaiting its ack settles that attempt (no new number)", awaiting, outcome{kind: kindReplayed, startMs: now + 500}, now+600,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now, DeliveredVia: store.ChannelWebSocket}, true)
	f("a replay write of a delivered event changes nothing", acked0(now), outcome{kind: kindReplayed, startMs: now}, now, acked0(now), false)
	settled := store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now - 1000, DeliveredVia: store.ChannelWebSocket, AckedAt: now}
	f("an attempt that fails after the event was settled is recorded, the event stays delivered", settled, attempt(2, false, store.ChannelWebSocket), now+5,
		store.EventState{Status: store.StatusDelivered, Attempts: 2, LastAt: now, DeliveredVia: store.ChannelWebSocket, AckedAt: now}, true)
	acked := store.EventState{Status: store.StatusDelivered, Attempts: 1, AckedAt: now}
	f("late deadline after an ack changes nothing", acked, outcome{kind: kindAckTimeout}, now+10_000, acked, false)
	f("ack without waiting only records the time", store.EventState{Status: store.StatusDelivered, Attempts: 1}, outcome{kind: kindAck}, now,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, AckedAt: now, LastAckAt: now}, false)
	ackedTwice := acked
	ackedTwice.LastAckAt = now + 5
	f("second ack keeps the first time", acked, outcome{kind: kindAck}, now+5, ackedTwice, false)

	// The ack is the truth: a failed event that a client acks was
	// delivered (a pull consumer acking after the schedule ran out).
	exhausted := store.EventState{Status: store.StatusFailed, Attempts: 3, LastAt: now - 1000}
	f("ack of a failed event delivers it", exhausted, outcome{kind: kindAck}, now,
		store.EventState{Status: store.StatusDelivered, Attempts: 3, LastAt: now - 1000, DeliveredVia: store.ChannelWebSocket, AckedAt: now, LastAckAt: now}, false)
	pullAck := outcome{kind: kindAck, channel: store.ChannelPull}
	f("pull ack of a failed event: delivered via pull", exhausted, pullAck, now,
		store.EventState{Status: store.StatusDelivered, Attempts: 3, LastAt: now - 1000, DeliveredVia: store.ChannelPull, AckedAt: now, LastAckAt: now}, false)
	f("pull ack of a pending event: delivered via pull, retries cancelled", retrying, pullAck, now,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now - 1000, DeliveredVia: store.ChannelPull, AckedAt: now, LastAckAt: now}, false)
	f("pull ack of an event awaiting a WebSocket ack settles that attempt", awaiting, pullAck, now+100,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now, DeliveredVia: store.ChannelWebSocket, AckedAt: now + 100, LastAckAt: now + 100}, true)
	f("pull ack of a delivered event only records the time", acked0(now), pullAck, now+7,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, AckedAt: now, LastAckAt: now + 7}, false)
	// A failed event that was acked and then redelivered starts a new
	// cycle like any other.
	f("redeliver after an ack of a failed event", store.EventState{Status: store.StatusDelivered, Attempts: 3, DeliveredVia: store.ChannelPull, AckedAt: now}, outcome{kind: kindRedeliver}, now+9,
		store.EventState{Status: store.StatusPending, Attempts: 3, CycleStart: 3, DeliveredVia: store.ChannelPull, AckedAt: now, NextAt: now + 9}, false)

	// Redeliver starts a new cycle now; its attempts count on.
	failed := store.EventState{Status: store.StatusFailed, Attempts: 3, LastAt: now - 1}
	re := store.EventState{Status: store.StatusPending, Attempts: 3, CycleStart: 3, LastAt: now - 1, NextAt: now}
	f("redeliver", failed, outcome{kind: kindRedeliver}, now, re, false)
	inCycle := attempt(4, false, store.ChannelNone)
	inCycle.cycle = 3
	f("new cycle: its first failure waits schedule[1]", re, inCycle, now,
		store.EventState{Status: store.StatusPending, Attempts: 4, CycleStart: 3, LastAt: now, NextAt: now + 30_000}, true)
	// An attempt that ran while a redeliver happened: recorded; the new
	// cycle starts after it, at the time redeliver set.
	stale := attempt(4, false, store.ChannelWebhook)
	stale.cycle = 0
	f("attempt of the old cycle", re, stale, now+7,
		store.EventState{Status: store.StatusPending, Attempts: 4, CycleStart: 4, LastAt: now, NextAt: now}, true)

	// An ack that reaches the writer before its attempt's outcome counts.
	ackedEarly := store.EventState{Status: store.StatusPending, NextAt: now, AckedAt: now + 1, LastAckAt: now + 1}
	f("ack before the attempt's outcome", ackedEarly, ws, now+2,
		store.EventState{Status: store.StatusDelivered, Attempts: 1, LastAt: now, DeliveredVia: store.ChannelWebSocket, AckedAt: now + 1, LastAckAt: now + 1}, true)
}

func acked0(now int64) store.EventState {
	return store.EventState{Status: store.StatusDelivered, Attempts: 1, AckedAt: now}
}
