package delivery

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
func (d *Dispatcher) sweepLoop() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		now := d.now()
		total := 0
		for {
			n, err := d.db.SweepEvents(now.Add(-d.cfg.Retention), now.Add(-d.cfg.FailedRetention), sweepBatch)
			if err != nil {
				d.log.Error("cannot sweep expired events", "error", err)
				break
			}
			total += n
			if n < sweepBatch {
				break
			}
			select {
			case <-d.stop:
				return
			default:
			}
		}
		if total > 0 {
			d.m.swept.Add(total)
			d.log.Info("expired events deleted", "count", total)
		}
		t.Reset(sweepEvery)
	}
}
