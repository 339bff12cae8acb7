package delivery

import (
	"log/slog"
	"sync"
	"time"

	"github.com/mailwire/mailwire/store"
)

// Logs an operator can act on: failed webhook attempts, at most one line
// per endpoint host per hostLogEvery (with how many were not logged), and
// events marked failed, at most failedLogBurst lines per second.
const (
	hostLogEvery   = 10 * time.Second
	hostLogMax     = 4096 // hosts remembered; past it the memory starts over
	failedLogBurst = 20
)

type opLog struct {
	log *slog.Logger

	mu    sync.Mutex
	hosts map[string]*hostLog
	sec   int64 // the second fails counts in
	fails int   // events-failed lines in sec
	quiet int   // events-failed lines left out since the last one
}

type hostLog struct {
	last       time.Time
	suppressed int
}

// webhookFailed logs a failed webhook attempt (never its URL's path or
// query, which may hold a token: the host only).
func (l *opLog) webhookFailed(host string, ev *store.Event, o *outcome) {
	now := time.Now()
	l.mu.Lock()
	if l.hosts == nil || len(l.hosts) >= hostLogMax {
		l.hosts = make(map[string]*hostLog)
	}
	h := l.hosts[host]
	if h == nil {
		h = &hostLog{}
		l.hosts[host] = h
	}
	if !h.last.IsZero() && now.Sub(h.last) < hostLogEvery {
		h.suppressed++
		l.mu.Unlock()
		return
	}
	h.last = now
	n := h.suppressed
	h.suppressed = 0
	l.mu.Unlock()
	args := []any{"host", host, "event", ev.ID, "account", ev.AccountID, "inbox", ev.InboxID, "attempt", o.n,
		"duration_ms", o.duration.Milliseconds(), "not_logged_since_last", n}
	if o.status != 0 {
		args = append(args, "http_status", o.status)
	}
	if o.errText != "" {
		args = append(args, "error", o.errText)
	}
	l.log.Warn("webhook attempt failed", args...)
}

// eventFailed logs an event that ran out of attempts.
func (l *opLog) eventFailed(ev *store.Event, st store.EventState) {
	sec := time.Now().Unix()
	l.mu.Lock()
	if sec != l.sec {
		l.sec, l.fails = sec, 0
	}
	l.fails++
	if l.fails > failedLogBurst {
		l.quiet++
		l.mu.Unlock()
		return
	}
	quiet := l.quiet
	l.quiet = 0
	l.mu.Unlock()
	l.log.Warn("event failed: no attempt left (redeliver with POST /v1/events/{id}/redeliver)", "event", ev.ID,
		"account", ev.AccountID, "inbox", ev.InboxID, "attempts", st.Attempts, "not_logged_since_last", quiet)
}
