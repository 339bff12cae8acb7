// Package limits holds the server's resource budgets, shared by the HTTP
// edge (engine) and SMTP (smtpd): message bytes in flight (Memory),
// sockets against the process's descriptor limit (Descriptors), and free
// disk space under the data directory (Disk). Each refuses work past its
// budget instead of letting the resource run out, keeps metrics (in use,
// limit, refusals) and logs refusals at a bounded rate.
//
// Every type is safe for concurrent use.
package limits

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// RateLog logs at most one line per Every, counting the lines it dropped
// (reported with the next one). The zero Every logs every line.
type RateLog struct {
	Log        *slog.Logger
	Every      time.Duration
	last       atomic.Int64 // unix ns of the last line
	suppressed atomic.Int64
}

// Warn logs msg at warning level unless a line went out less than Every
// ago.
func (r *RateLog) Warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(r.Every) || !r.last.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return
	}
	r.Log.Warn(msg, append(args, "not_logged_since_last", r.suppressed.Swap(0))...)
}
