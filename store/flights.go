package store

import (
	"sync"

	"github.com/mailwire/mailwire/internal/ids"
)

// flight states of a claimed event.
const (
	flightCommitting uint8 = iota + 1 // its ingest batch has not returned yet
	flightActive                      // durable, somewhere in the pipeline
)

// inflight is the set of claimed events (the Pebble event log's leases),
// and the order in which new events of one account become visible.
//
// A claimed event is not picked by the scheduler. New events are claimed
// as their ids are made, under one lock, from one ids.Sequence, so within
// an account a later id is always claimed after an earlier one and sorts
// after it; they are released to delivery in
// id order, an event only once every earlier event of its account has been
// committed (or has failed). So one connection receives an account's live
// events in id order, and a reader that stops below the account's stable
// bound (stableBound) never returns an event that an earlier one, still
// being stored, could follow: a client that resumes after the last event
// it got (replay) misses nothing.
type inflight struct {
	mu  sync.Mutex
	seq *ids.Sequence // event ids: strictly increasing in claim order
	m   map[string]uint8
	// queues holds, per account, the new events not yet released, in id
	// order (claim order).
	queues map[string][]*newEvent
}

type newEvent struct {
	id       string
	resolved bool // its commit returned
	ok       bool // ... successfully
	ev       Event
}

func newInflight() *inflight {
	return &inflight{seq: ids.NewSequence(ids.Event), m: make(map[string]uint8, 1024), queues: make(map[string][]*newEvent)}
}

// newEvents makes and claims one event id per account (in order).
func (f *inflight) newEvents(accounts []string) []string {
	out := make([]string, len(accounts))
	f.mu.Lock()
	for i, acc := range accounts {
		id := f.seq.Next()
		out[i] = id
		f.m[id] = flightCommitting
		f.queues[acc] = append(f.queues[acc], &newEvent{id: id})
	}
	f.mu.Unlock()
	return out
}

// committed records the outcome of the commit of evts (claimed by
// newEvents) and returns the events of their accounts that are now
// released, in id order per account: those committed whose earlier
// events are all resolved. Events whose commit failed are dropped.
func (f *inflight) committed(evts []Event, ok bool) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	touched := make([]string, 0, 1)
	for i := range evts {
		ev := &evts[i]
		q := f.queues[ev.AccountID]
		for _, ne := range q {
			if ne.id == ev.ID {
				ne.resolved, ne.ok, ne.ev = true, ok, *ev
				break
			}
		}
		if len(touched) == 0 || touched[len(touched)-1] != ev.AccountID {
			touched = append(touched, ev.AccountID)
		}
		if ok {
			f.m[ev.ID] = flightActive
		} else {
			delete(f.m, ev.ID)
		}
	}
	var out []Event
	for _, acc := range touched {
		q := f.queues[acc]
		n := 0
		for n < len(q) && q[n].resolved {
			if q[n].ok {
				out = append(out, q[n].ev)
			}
			n++
		}
		switch {
		case n == len(q):
			delete(f.queues, acc)
		case n > 0:
			clear(q[:n])
			f.queues[acc] = q[n:]
		}
	}
	return out
}

// stableBound returns an event id such that every event of the account
// below it is durable and no event below it can appear later: the
// account's earliest event still being stored, or, when none is, a fresh
// id (every id made later sorts after it).
func (f *inflight) stableBound(accountID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.queues[accountID]; len(q) > 0 {
		return q[0].id
	}
	return f.seq.Next()
}

// tryClaim claims id as active unless it is claimed already.
func (f *inflight) tryClaim(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[id]; ok {
		return false
	}
	f.m[id] = flightActive
	return true
}

func (f *inflight) claimed(id string) bool {
	f.mu.Lock()
	_, ok := f.m[id]
	f.mu.Unlock()
	return ok
}

func (f *inflight) release(id string) {
	f.mu.Lock()
	delete(f.m, id)
	f.mu.Unlock()
}

func (f *inflight) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}
