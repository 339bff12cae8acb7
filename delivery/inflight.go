package delivery

import (
	"sync"
	"time"
)

// flight states of a claimed event.
const (
	flightCommitting uint8 = iota + 1 // its ingest batch has not returned yet
	flightActive                      // durable, somewhere in the pipeline
)

// inflight is the set of claimed events. A claimed event is not picked by
// the scheduler; a committing one is not replayed until durable.
type inflight struct {
	mu   sync.Mutex
	cond *sync.Cond
	m    map[string]uint8
	// committing counts flightCommitting entries, so WaitDurable can skip
	// the lock dance when nothing is committing.
	committing int
}

func newInflight() *inflight {
	f := &inflight{m: make(map[string]uint8, 1024)}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// claimCommitting marks ids as committing (ingest, before its commit).
func (f *inflight) claimCommitting(ids []string) {
	f.mu.Lock()
	for _, id := range ids {
		f.m[id] = flightCommitting
		f.committing++
	}
	f.mu.Unlock()
}

// committed turns committing ids into active ones (ok) or drops them.
func (f *inflight) committed(ids []string, ok bool) {
	f.mu.Lock()
	for _, id := range ids {
		if f.m[id] == flightCommitting {
			f.committing--
		}
		if ok {
			f.m[id] = flightActive
		} else {
			delete(f.m, id)
		}
	}
	f.mu.Unlock()
	f.cond.Broadcast()
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
	if f.m[id] == flightCommitting {
		f.committing--
	}
	delete(f.m, id)
	f.mu.Unlock()
}

func (f *inflight) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// waitDurable blocks until none of ids is committing, or until timeout.
// It reports whether they all are durable (or unknown, i.e. not in flight).
func (f *inflight) waitDurable(ids []string, timeout time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.committing == 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	var timer *time.Timer
	for {
		busy := false
		for _, id := range ids {
			if f.m[id] == flightCommitting {
				busy = true
				break
			}
		}
		if !busy {
			if timer != nil {
				timer.Stop()
			}
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		if timer == nil {
			timer = time.AfterFunc(time.Until(deadline), f.cond.Broadcast)
		}
		f.cond.Wait()
	}
}
