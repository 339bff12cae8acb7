package limits

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
)

// Descriptors is the budget of client sockets (HTTP, WebSocket and SMTP
// together) under the process's RLIMIT_NOFILE: the limit minus a reserve
// for the store, outgoing webhooks and the rest, so that accepting
// connections never takes the descriptors Pebble needs to rotate its WAL.
type Descriptors struct {
	limit, reserve, budget int64
	open                   atomic.Int64
	refused                map[string]*metrics.Counter
	evicted                map[string]*metrics.Counter
	rl                     RateLog
}

// NoFileLimit is the process's RLIMIT_NOFILE soft limit (Go raises it to
// the hard limit at start), 0 when it cannot be read.
func NoFileLimit() int64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int64(rl.Cur)
}

// Refusal reasons (the reason label of mailwire_connections_refused_total).
const (
	RefusedBudget = "descriptor_budget"
	RefusedPerIP  = "per_ip"
)

// NewDescriptors returns the budget for this process: its descriptor
// limit minus reserve (at least a tenth of the limit stays for clients).
func NewDescriptors(reserve int64, set *metrics.Set, log *slog.Logger) *Descriptors {
	limit := NoFileLimit()
	if limit <= 0 {
		limit = 1024
	}
	budget := max(limit-reserve, limit/10)
	d := &Descriptors{limit: limit, reserve: limit - budget, budget: budget, refused: map[string]*metrics.Counter{}, evicted: map[string]*metrics.Counter{},
		rl: RateLog{Log: log.With("component", "limits"), Every: 5 * time.Second}}
	set.NewGauge(promtext.Describe("mailwire_fd_limit", "The process's file descriptor limit (RLIMIT_NOFILE)."), func() float64 { return float64(limit) })
	set.NewGauge(promtext.Describe("mailwire_fd_client_budget", "File descriptors client sockets may use (the limit less the store's and webhooks' reserve)."), func() float64 { return float64(budget) })
	set.NewGauge(promtext.Describe("mailwire_client_connections", "Open client sockets: HTTP, WebSocket and SMTP."), func() float64 { return float64(d.open.Load()) })
	promtext.Describe("mailwire_connections_refused_total", "Client connections reset at accept, by reason (descriptor_budget, per_ip).")
	for _, r := range []string{RefusedBudget, RefusedPerIP} {
		d.refused[r] = set.NewCounter(`mailwire_connections_refused_total{reason="` + r + `"}`)
	}
	promtext.Describe("mailwire_connections_evicted_total", "Connections closed to make room for a new one in a full descriptor budget, by reason (unproven: the oldest that had not yet sent a complete request head; idle: then the longest idle kept-alive connection between requests).")
	for _, r := range []string{EvictedUnproven, EvictedIdle} {
		d.evicted[r] = set.NewCounter(`mailwire_connections_evicted_total{reason="` + r + `"}`)
	}
	return d
}

// Limit, Reserve and Budget are the figures the budget was made from.
func (d *Descriptors) Limit() int64   { return d.limit }
func (d *Descriptors) Reserve() int64 { return d.reserve }
func (d *Descriptors) Budget() int64  { return d.budget }

// Open is the client sockets counted now.
func (d *Descriptors) Open() int64 { return d.open.Load() }

func (d *Descriptors) tryOpen() bool {
	for {
		n := d.open.Load()
		if n >= d.budget {
			return false
		}
		if d.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (d *Descriptors) closed() {
	if d.open.Add(-1) < 0 {
		panic("BUG: a client socket was released twice")
	}
}

func (d *Descriptors) refuse(reason, edge string, ip netip.Addr) {
	d.refused[reason].Inc()
	d.rl.Warn("connection refused at accept", "edge", edge, "reason", reason, "remote", ip.String(),
		"open", d.open.Load(), "budget", d.budget)
}

// Gate admits the connections of one edge (HTTP, SMTP): within the
// descriptor budget and at most perIP at once from one client address
// (IPv6: one /64). A client behind a reverse proxy shares the proxy's
// address; set perIP to 0 (no cap) there.
type Gate struct {
	edge  string
	fds   *Descriptors
	perIP int

	mu   sync.Mutex
	byIP map[netip.Addr]int
}

// NewGate returns a gate for edge ("http", "smtp").
func NewGate(edge string, fds *Descriptors, perIP int) *Gate {
	return &Gate{edge: edge, fds: fds, perIP: perIP, byIP: map[netip.Addr]int{}}
}

// ClientKey is the per-address key of a remote address: its IPv4
// address, or the /64 of its IPv6 address.
func ClientKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Admit counts a new connection from key, or refuses it (with the reason).
// A nil Gate admits everything.
func (g *Gate) Admit(key netip.Addr) (ok bool, reason string) {
	return g.AdmitEvicting(key, nil)
}

// AdmitEvicting is Admit, except that when the descriptor budget is full
// it calls evict (without the gate's lock held) to make room, and tries
// again while evict reports that it freed a slot (evict closes a
// connection and gives its slot back with Evicted). The connection is
// refused when evict is nil or has nothing left to close.
func (g *Gate) AdmitEvicting(key netip.Addr, evict func() bool) (ok bool, reason string) {
	if g == nil {
		return true, ""
	}
	g.mu.Lock()
	for {
		if g.perIP > 0 && g.byIP[key] >= g.perIP {
			g.mu.Unlock()
			g.fds.refuse(RefusedPerIP, g.edge, key)
			return false, RefusedPerIP
		}
		if g.fds.tryOpen() {
			break
		}
		g.mu.Unlock()
		if evict == nil || !evict() {
			g.fds.refuse(RefusedBudget, g.edge, key)
			return false, RefusedBudget
		}
		g.mu.Lock()
	}
	g.byIP[key]++
	g.mu.Unlock()
	return true, ""
}

// Why a connection was evicted (mailwire_connections_evicted_total's
// reason label).
const (
	// EvictedUnproven: it had not sent a complete request head yet.
	EvictedUnproven = "unproven"
	// EvictedIdle: a kept-alive connection between requests, idle the
	// longest.
	EvictedIdle = "idle"
)

// Evicted gives back the slot of a connection from key that was closed to
// make room (AdmitEvicting's evict), counts it by reason (EvictedUnproven,
// EvictedIdle) and logs it (at most every 5 s). It stands for Release:
// the caller releases each connection once, with one or the other.
func (g *Gate) Evicted(key netip.Addr, reason string) {
	if g == nil {
		return
	}
	g.Release(key)
	g.fds.evicted[reason].Inc()
	g.fds.rl.Warn("connection closed to make room: descriptor budget full", "reason", reason, "edge", g.edge,
		"remote", key.String(), "open", g.fds.open.Load(), "budget", g.fds.budget)
}

// Release gives back a connection Admit counted.
func (g *Gate) Release(key netip.Addr) {
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.byIP[key]--; g.byIP[key] <= 0 {
		delete(g.byIP, key)
	}
	g.mu.Unlock()
	g.fds.closed()
}

// Open is the connections from key counted now (tests, the operator view).
func (g *Gate) Open(key netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.byIP[key]
}

// AcceptRetry reports whether an Accept error is the process (or the
// system) running out of descriptors or buffers: the caller waits and
// tries again instead of treating the listener as broken. backoff is the
// wait, doubled from 5 ms to 1 s.
func AcceptRetry(err error, backoff *time.Duration) bool {
	if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) &&
		!errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.ENOMEM) {
		return false
	}
	*backoff = min(max(2**backoff, 5*time.Millisecond), time.Second)
	return true
}
