package store

import (
	"bytes"
	"log/slog"
	"sync"
	"time"
)

// Scheduler timing.
const (
	// schedIdleMax caps a sleep so a missed wake-up costs at most this.
	schedIdleMax = 5 * time.Second
	// schedBlockedRetry is the pause after the dispatcher's queues were
	// full.
	schedBlockedRetry = 20 * time.Millisecond
	// schedFullRescan: this often a scan starts from the beginning of the
	// due index instead of the cursor, so a due key that some path failed
	// to point the cursor at is still found (self-healing; the scan skips
	// claimed keys cheaply).
	schedFullRescan = 10 * time.Second
)

// scheduler hands due events (the due index) to the dispatcher as
// leases. It keeps a scan cursor: every due key before the cursor is
// either claimed or gone; lower moves the cursor back when a key is
// written (or released) before it. After a restart the cursor starts at
// the beginning, so every overdue attempt runs at start-up.
type scheduler struct {
	dl  *deliveries
	log *slog.Logger

	mu struct {
		sync.Mutex
		cursor   []byte // nil = beginning of the due index
		lowered  []byte // lowest key lowered during a scan (nil = none)
		scanning bool
		lastFull time.Time
	}
	wake chan struct{}
}

func newScheduler(dl *deliveries) *scheduler {
	return &scheduler{dl: dl, wake: make(chan struct{}, 1)}
}

// lower makes sure the next scan starts at or before key.
func (s *scheduler) lower(key []byte) {
	s.mu.Lock()
	if s.mu.scanning {
		if s.mu.lowered == nil || bytes.Compare(key, s.mu.lowered) < 0 {
			s.mu.lowered = append([]byte(nil), key...)
		}
	}
	if s.mu.cursor != nil && bytes.Compare(key, s.mu.cursor) < 0 {
		s.mu.cursor = append([]byte(nil), key...)
	}
	s.mu.Unlock()
	s.kick()
}

func (s *scheduler) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scheduler) run(stop <-chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-timer.C:
		case <-s.wake:
		}
		wait := s.scan()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// scan hands out every due, unclaimed event it can and returns how long to
// sleep before the next scan.
func (s *scheduler) scan() time.Duration {
	dl := s.dl
	s.mu.Lock()
	from := s.mu.cursor
	if time.Since(s.mu.lastFull) >= schedFullRescan {
		from, s.mu.lastFull = nil, time.Now()
	}
	s.mu.scanning = true
	s.mu.lowered = nil
	s.mu.Unlock()

	// Deliver is read once: StopDeliveries clears it while a scan may be
	// under way. Nothing is handed out on a store that cannot record an
	// outcome (a failed store would have every due attempt made again
	// and again until the process exits).
	deliver, _ := dl.deliverFunc()
	if deliver == nil || dl.db.writable() != nil {
		s.mu.Lock()
		s.mu.scanning = false
		s.mu.Unlock()
		return schedIdleMax
	}
	nowMs := dl.now().UnixMilli()
	var next []byte // the cursor after this scan
	blocked := false
	err := dl.db.ScanDue(from, nowMs, func(e Due) bool {
		select {
		case <-dl.stop:
			return false // stopping: the rest waits for the next start
		default:
		}
		if !dl.flights.tryClaim(e.EventID) {
			next = e.Key // claimed: its lease will lower the cursor if it is not done
			return true
		}
		if !deliver(&Lease{AccountID: e.AccountID, EventID: e.EventID, DueMs: e.At}) {
			dl.flights.release(e.EventID)
			dl.m.deferred.Inc()
			blocked = true
			return false
		}
		dl.m.scheduled.Inc()
		next = e.Key
		return true
	})
	if err != nil {
		s.log.Error("cannot scan due index", "error", err)
		blocked = true
	}

	s.mu.Lock()
	s.mu.scanning = false
	if next != nil {
		// Keys up to and including next are claimed or handed out; resume
		// just after it.
		s.mu.cursor = append(next, 0)
	}
	if s.mu.lowered != nil && (s.mu.cursor == nil || bytes.Compare(s.mu.lowered, s.mu.cursor) < 0) {
		s.mu.cursor = s.mu.lowered
	}
	s.mu.lowered = nil
	s.mu.Unlock()

	if blocked {
		return schedBlockedRetry
	}
	at, ok, err := dl.db.NextDue(nowMs)
	if err != nil || !ok {
		return schedIdleMax
	}
	wait := time.Duration(at-dl.now().UnixMilli()) * time.Millisecond
	return min(max(wait, 0), schedIdleMax)
}
