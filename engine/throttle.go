package engine

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// authThrottle makes repeated authentication failures from one client
// address cheap and slow (PROTOCOL.md §1): generic WebSocket libraries
// reconnect at once after a completed upgrade, so after burst failures
// within window from one address its upgrades are refused with 429 and
// Retry-After (which such libraries treat as a failed connect and back
// off from) until the window ends. Valid keys are never throttled. It
// also logs failures at a bounded rate, never with the key.
type authThrottle struct {
	burst  int
	window time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu struct {
		sync.Mutex
		m map[netip.Addr]*failWindow
		// lastLog and suppressed bound the log lines: one per
		// authLogEvery, counting the failures not logged.
		lastLog    time.Time
		suppressed int
	}
}

type failWindow struct {
	start time.Time
	n     int
}

const (
	// authTrackedMax bounds the addresses tracked; when full, windows
	// that ended are dropped, and if none has, tracking starts over (an
	// attacker with that many addresses is not slowed by this anyway).
	authTrackedMax = 16384
	// authLogEvery is the most often an auth failure is logged.
	authLogEvery = time.Second
)

func newAuthThrottle(burst int, window time.Duration, log *slog.Logger) *authThrottle {
	t := &authThrottle{burst: burst, window: window, log: log, now: time.Now}
	t.mu.m = make(map[netip.Addr]*failWindow)
	return t
}

// failed records a failed authentication from ip. It reports whether the
// address is over its budget, and when its window ends.
func (t *authThrottle) failed(ip netip.Addr) (retryAfter time.Duration, blocked bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.mu.m[ip]
	if w == nil || now.Sub(w.start) >= t.window {
		if w == nil && len(t.mu.m) >= authTrackedMax {
			t.evictLocked(now)
		}
		w = &failWindow{start: now}
		t.mu.m[ip] = w
	}
	w.n++
	blocked = w.n > t.burst
	if now.Sub(t.mu.lastLog) >= authLogEvery {
		t.log.Warn("authentication failed", "remote", ip.String(), "failures_in_window", w.n,
			"throttled", blocked, "not_logged_since_last", t.mu.suppressed)
		t.mu.lastLog, t.mu.suppressed = now, 0
	} else {
		t.mu.suppressed++
	}
	return w.start.Add(t.window).Sub(now), blocked
}

func (t *authThrottle) evictLocked(now time.Time) {
	for ip, w := range t.mu.m {
		if now.Sub(w.start) >= t.window {
			delete(t.mu.m, ip)
		}
	}
	if len(t.mu.m) >= authTrackedMax {
		clear(t.mu.m)
	}
}

// clientIP is the request's client address (the zero Addr when it cannot
// be parsed).
func clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}
