package limits

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
)

// Memory is the budget for inbound message bytes in flight across SMTP
// and HTTP (--ingest-memory). A message holds its reservation from the
// moment its bytes start arriving (or its size is declared) until it is
// stored or refused. Past the budget a caller waits briefly (SMTP) or is
// refused at once (HTTP, whose refusal happens on the poller), and the
// client is told to retry (451 4.3.0 / 503 + Retry-After): nothing is
// buffered without bound.
type Memory struct {
	limit int64

	mu struct {
		sync.Mutex
		inUse int64
		// waiters are woken, oldest first, as reservations are released.
		waiters []*memWaiter
	}

	refused *metrics.Counter
	rl      RateLog
}

type memWaiter struct {
	n     int64
	ready chan struct{} // closed when the reservation was granted
}

// NewMemory returns a budget of limit bytes (metrics in set).
func NewMemory(limit int64, set *metrics.Set, log *slog.Logger) *Memory {
	m := &Memory{limit: limit, rl: RateLog{Log: log.With("component", "limits"), Every: 5 * time.Second}}
	set.NewGauge(promtext.Describe("mailwire_ingest_memory_limit_bytes", "Budget for inbound message bytes in flight (--ingest-memory)."), func() float64 { return float64(limit) })
	set.NewGauge(promtext.Describe("mailwire_ingest_memory_in_use_bytes", "Inbound message bytes in flight now, counted against --ingest-memory."), func() float64 { return float64(m.InUse()) })
	m.refused = set.NewCounter(promtext.Describe("mailwire_ingest_memory_refused_total", "Inbound messages refused (503 / 451) because --ingest-memory was full."))
	return m
}

// Limit is the budget in bytes.
func (m *Memory) Limit() int64 { return m.limit }

// InUse is the bytes reserved now.
func (m *Memory) InUse() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.inUse
}

// TryAcquire reserves n bytes if they fit now. A nil Memory has no limit.
func (m *Memory) TryAcquire(n int64, what string) bool {
	if m == nil {
		return true
	}
	m.mu.Lock()
	ok := len(m.mu.waiters) == 0 && m.mu.inUse+n <= m.limit
	if ok {
		m.mu.inUse += n
	}
	m.mu.Unlock()
	if !ok {
		m.refuse(n, what)
	}
	return ok
}

// Acquire reserves n bytes, waiting up to wait for room (first come,
// first served); false when they did not fit in time. A reservation
// larger than the whole budget never fits.
func (m *Memory) Acquire(n int64, wait time.Duration, what string) bool {
	if m == nil {
		return true
	}
	m.mu.Lock()
	if len(m.mu.waiters) == 0 && m.mu.inUse+n <= m.limit {
		m.mu.inUse += n
		m.mu.Unlock()
		return true
	}
	if n > m.limit || wait <= 0 {
		m.mu.Unlock()
		m.refuse(n, what)
		return false
	}
	w := &memWaiter{n: n, ready: make(chan struct{})}
	m.mu.waiters = append(m.mu.waiters, w)
	m.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return true
	case <-t.C:
	}
	m.mu.Lock()
	for i, x := range m.mu.waiters {
		if x == w {
			m.mu.waiters = append(m.mu.waiters[:i], m.mu.waiters[i+1:]...)
			m.grantLocked() // the next waiters may fit now
			m.mu.Unlock()
			m.refuse(n, what)
			return false
		}
	}
	m.mu.Unlock()
	<-w.ready // granted while the timer fired
	return true
}

// Release gives back n bytes reserved earlier.
func (m *Memory) Release(n int64) {
	if m == nil || n == 0 {
		return
	}
	m.mu.Lock()
	m.mu.inUse -= n
	if m.mu.inUse < 0 {
		m.mu.Unlock()
		panic("BUG: ingest memory released more than reserved")
	}
	m.grantLocked()
	m.mu.Unlock()
}

// grantLocked hands room to waiters in order while the first one fits.
func (m *Memory) grantLocked() {
	for len(m.mu.waiters) > 0 {
		w := m.mu.waiters[0]
		if m.mu.inUse+w.n > m.limit {
			return
		}
		m.mu.inUse += w.n
		m.mu.waiters[0] = nil
		m.mu.waiters = m.mu.waiters[1:]
		close(w.ready)
	}
}

func (m *Memory) refuse(n int64, what string) {
	m.refused.Inc()
	m.rl.Warn("ingest refused: message memory budget (--ingest-memory) is full", "via", what, "bytes", n,
		"in_use", m.InUse(), "limit", m.limit)
}

// IngestCopies is how many times a message's size it holds against the
// budget. What is live at once while it is stored: from 4 MiB on, its
// receive buffer (1×: the store writes the raw bytes and attachments to
// tables from it, store/tables.go; over HTTP the body is read straight
// into it) plus, for a large text body, its decoded text (1× more; the
// record is streamed into a table); below 4 MiB, for one recipient with a declared size, the
// receive buffer with room for the Pebble batch built in it (about
// 2.06×). Without a declared size or for several recipients a smaller
// message's batch is beside the raw bytes: up to 3.7× (a DATA buffer
// grown by doubling is charged for its capacity). Peak RSS per in-flight
// 20 MiB message, garbage included: 1.2× with an attachment, 1.85–2.1×
// with a 20 MiB text body; the charge stays 4× for the smaller ones.
// Garbage the collector has not reclaimed yet comes on top; the Go
// memory limit (SetGoMemoryLimit) bounds it (docs/OPERATIONS.md,
// "Resource budgets", and docs/BENCHMARKS.md, "Memory per in-flight
// message").
const IngestCopies = 4

// MessageCost is the reservation for a message (or request body) of n
// bytes.
func MessageCost(n int) int64 { return int64(n) * IngestCopies }

// DefaultIngestMemory is --ingest-memory's default: an eighth of the
// memory this process may use (the cgroup's limit when one is set, else
// the machine's), and at least room for four messages of maxMessage bytes.
func DefaultIngestMemory(maxMessage int) int64 {
	return max(memoryAvailable()/8, 4*MessageCost(maxMessage))
}

// memoryAvailable is the cgroup v2 memory limit, else MemTotal, else 1 GiB.
func memoryAvailable() int64 {
	total := int64(1 << 30)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					total = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < total {
			total = n
		}
	}
	return total
}

// GoMemoryHeadroom is what SetGoMemoryLimit allows the Go heap beyond the
// ingest budget: connections, caches of small objects, the event log's
// buffers (the base heap of an idle node is about 10 MiB).
const GoMemoryHeadroom = 256 << 20

// SetGoMemoryLimit sets the Go runtime's soft memory limit to the ingest
// budget plus GoMemoryHeadroom, unless GOMEMLIMIT is set, and returns
// the limit in force (math.MaxInt64: none). With GOGC alone the heap may
// grow to twice what is live before a collection, so a burst of large
// messages leaves their garbage (dropped read buffers, Pebble's flush
// buffers) in RSS; near this limit the collector runs sooner instead.
// It is soft: a live heap past it is not refused, only collected more
// often. Pebble's memtables and block cache are allocated outside the
// Go heap and are not counted.
func SetGoMemoryLimit(budget int64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	lim := budget + GoMemoryHeadroom
	debug.SetMemoryLimit(lim)
	return lim
}
