package delivery

import (
	"errors"
	"log/slog"
	"time"

	"github.com/mailwire/mailwire/store"
)

// writerBatchMax bounds how many outcomes go into one synced commit; more
// would only delay the first ones' claims being released.
const writerBatchMax = 512

// writer is the only goroutine that mutates delivery state. It drains
// outcomes, applies each to the current state (policy.apply) and commits
// them in one synced batch, so concurrent outcomes share an fsync.
//
// Its input channel is never closed: senders hold Dispatcher.outbox shared
// and check its closed flag (a send racing a close would be a data race);
// Shutdown sets the flag under the lock, then quit ends run once the
// channel is empty.
type writer struct {
	d    *Dispatcher
	in   chan *outcome
	quit chan struct{}
	log  *slog.Logger
}

// run commits outcomes until quit is closed and nothing is left.
func (w *writer) run() {
	batch := make([]*outcome, 0, writerBatchMax)
	for {
		var o *outcome
		select {
		case o = <-w.in:
		case <-w.quit:
			select {
			case o = <-w.in:
			default:
				return
			}
		}
		batch = append(batch[:0], o)
	fill:
		for len(batch) < writerBatchMax {
			select {
			case o2 := <-w.in:
				batch = append(batch, o2)
			default:
				break fill
			}
		}
		w.commit(batch)
	}
}

type stateKey struct{ acc, evt string }

func (w *writer) commit(batch []*outcome) {
	d := w.d
	now := d.now()
	nowMs := now.UnixMilli()
	sb := d.db.NewStateBatch()
	// States changed earlier in this batch: later outcomes for the same
	// event must see them, not the stored (stale) ones.
	cur := make(map[stateKey]store.EventState, len(batch))
	var lowest []byte
	for _, o := range batch {
		k := stateKey{o.accountID, o.evtID}
		st, seen := cur[k]
		old := st
		if !seen {
			var err error
			st, err = d.db.GetEventState(o.accountID, o.evtID)
			if errors.Is(err, store.ErrNotFound) {
				// Deleted with its inbox meanwhile; drop a stale due entry.
				if o.kind == kindRepair && o.dueMs != 0 {
					sb.DeleteDue(o.dueMs, o.evtID)
				}
				continue
			}
			if err != nil {
				w.log.Error("cannot read event state", "event", o.evtID, "error", err)
				continue // the claim is released below; the due entry brings it back
			}
			old = st
		}
		if o.kind == kindRepair && o.eventGone {
			sb.DeleteState(o.accountID, o.evtID, old)
			continue
		}
		nw, att := d.policy.apply(st, o, nowMs)
		sb.PutState(o.accountID, o.evtID, old, nw)
		if att != nil {
			sb.PutAttempt(o.evtID, *att)
			d.m.attempt(att.Channel, att.OK)
		}
		if nw.Status == store.StatusFailed && old.Status != store.StatusFailed {
			d.m.failed.Inc()
		}
		cur[k] = nw
	}
	start := time.Now()
	if err := sb.Commit(true); err != nil {
		// Pebble treats commit errors as fatal and panics before we get
		// here; a returned error still must not release claims as if done.
		w.log.Error("cannot commit delivery state", "error", err)
	}
	d.m.writerCommit.UpdateDuration(start)
	for _, o := range batch {
		if o.claimed {
			d.flights.release(o.evtID)
		}
		// Point the scheduler at every due key this batch wrote or freed
		// from a claim, so its cursor never stands past one.
		if st, ok := cur[stateKey{o.accountID, o.evtID}]; ok && st.NextAt != 0 {
			dk := store.DueKey(st.NextAt, o.evtID)
			if lowest == nil || string(dk) < string(lowest) {
				lowest = dk
			}
		}
		if o.done != nil {
			o.done <- nil
		}
	}
	if lowest != nil {
		d.sched.lower(lowest)
	}
}
