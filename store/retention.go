package store

import "time"

// Retention sweeping.
const (
	// sweepEvery is the period of the retention sweep.
	sweepEvery = 10 * time.Minute
	// sweepBatch bounds one sweep commit, so a large backlog is deleted in
	// steps instead of one huge batch.
	sweepBatch = 10000
)

// sweepLoop deletes delivered and failed events past their retention
// (pending events are never deleted), at start and every sweepEvery.
func (dl *deliveries) sweepLoop(stop <-chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := dl.now()
		total := 0
		for {
			n, err := dl.db.SweepEvents(now.Add(-dl.cfg.Retention), now.Add(-dl.cfg.FailedRetention), sweepBatch)
			if err != nil {
				dl.log.Error("cannot sweep expired events", "error", err)
				break
			}
			total += n
			if n < sweepBatch {
				break
			}
			select {
			case <-stop:
				return
			default:
			}
		}
		if total > 0 {
			dl.m.swept.Add(total)
			dl.log.Info("expired events deleted", "count", total)
		}
		t.Reset(sweepEvery)
	}
}
