package store

import (
	"errors"
	"log/slog"
	"time"
)

// writerBatchMax bounds how many records go into one synced commit; more
// would only delay the first ones' claims being released.
const writerBatchMax = 512

// record is one state change for the writer.
type record struct {
	accountID, evtID string
	change           Change
	lease            *Lease // set: the claim is released after the commit
	done             Recorded
	wait             chan error // set: told once the change is durable

	// repair, instead of a change: drop the due entry at dueMs of an
	// event whose state no longer needs it, or (eventGone) the state of
	// an event whose record is missing.
	repair    bool
	dueMs     int64
	eventGone bool
}

// writer is the only goroutine that mutates delivery state. It drains
// records, applies each change to the current state and commits them in
// one synced batch, so concurrent outcomes share an fsync.
//
// Its input channel is never closed: senders hold deliveries.outbox
// shared and check its closed flag (a send racing a close would be a data
// race); close sets the flag under the lock, then quit ends run once the
// channel is empty.
type writer struct {
	dl   *deliveries
	in   chan *record
	quit chan struct{}
	log  *slog.Logger
}

// run commits records until quit is closed and nothing is left.
func (w *writer) run() {
	batch := make([]*record, 0, writerBatchMax)
	for {
		var r *record
		select {
		case r = <-w.in:
		case <-w.quit:
			select {
			case r = <-w.in:
			default:
				return
			}
		}
		batch = append(batch[:0], r)
	fill:
		for len(batch) < writerBatchMax {
			select {
			case r2 := <-w.in:
				batch = append(batch, r2)
			default:
				break fill
			}
		}
		w.commit(batch)
	}
}

type stateKey struct{ acc, evt string }

// result is what the batch did to one record.
type result struct {
	old, nw EventState
	err     error
	touched bool // nw is meaningful
}

func (w *writer) commit(batch []*record) {
	dl := w.dl
	db := dl.db
	nowMs := dl.now().UnixMilli()
	sb := db.newStateBatch()
	// States changed earlier in this batch: later records for the same
	// event must see them, not the stored (stale) ones.
	cur := make(map[stateKey]EventState, len(batch))
	res := make([]result, len(batch))
	for i, r := range batch {
		k := stateKey{r.accountID, r.evtID}
		st, seen := cur[k]
		if !seen {
			var err error
			st, err = db.GetEventState(r.accountID, r.evtID)
			if errors.Is(err, ErrNotFound) {
				// Deleted with its inbox meanwhile; drop a stale due entry.
				if r.repair && r.dueMs != 0 {
					sb.DeleteDue(r.dueMs, r.evtID)
				}
				res[i].err = ErrNotFound
				continue
			}
			if err != nil {
				w.log.Error("cannot read event state", "event", r.evtID, "error", err)
				res[i].err = err
				continue // the claim is released below; the due entry brings it back
			}
		}
		old := st
		switch {
		case r.repair && r.eventGone:
			sb.DeleteState(r.accountID, r.evtID, old)
			delete(cur, k)
			continue
		case r.repair:
			nw := st
			if st.Status != StatusPending {
				nw.NextAt = 0
			}
			if st.NextAt != r.dueMs && r.dueMs != 0 {
				sb.DeleteDue(r.dueMs, r.evtID) // a ghost entry beside the real one
			}
			sb.PutState(r.accountID, r.evtID, old, nw)
			cur[k] = nw
			res[i] = result{old: old, nw: nw, touched: true}
			continue
		}
		nw, att := r.change(st, nowMs)
		sb.PutState(r.accountID, r.evtID, old, nw)
		if att != nil {
			sb.PutAttempt(r.evtID, *att)
		}
		cur[k] = nw
		res[i] = result{old: old, nw: nw, touched: true}
	}
	start := time.Now()
	err := sb.Commit(true)
	dl.m.writerCommit.UpdateDuration(start)
	if err != nil {
		// Pebble treats commit errors as fatal (the store refuses writes
		// from then on, see DB.writable): report them to every record.
		w.log.Error("cannot commit delivery state", "error", err)
	}
	var lowest []byte
	for i, r := range batch {
		if r.lease != nil {
			dl.flights.release(r.evtID)
		}
		rerr := res[i].err
		if err != nil {
			rerr = err
		}
		if rerr != nil && err == nil && r.lease != nil && r.lease.DueMs != 0 {
			// Nothing written: the due entry that brought the lease is
			// still there; the scan must not stand past it.
			if dk := dueKey(r.lease.DueMs, r.evtID); lowest == nil || string(dk) < string(lowest) {
				lowest = dk
			}
		}
		// Point the scheduler at every due key this batch wrote or freed
		// from a claim, so its cursor never stands past one.
		if st, ok := cur[stateKey{r.accountID, r.evtID}]; ok && st.NextAt != 0 {
			dk := dueKey(st.NextAt, r.evtID)
			if lowest == nil || string(dk) < string(lowest) {
				lowest = dk
			}
		}
		if r.done != nil {
			r.done(res[i].old, res[i].nw, rerr)
		}
		if r.wait != nil {
			r.wait <- rerr
		}
	}
	// A failed commit fails the store: nothing is lowered (the scheduler
	// stops handing out leases on a store that cannot record them).
	if lowest != nil && err == nil {
		dl.sched.lower(lowest)
	}
}
