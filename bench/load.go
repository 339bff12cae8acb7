package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// LoadConfig configures a Generator. Zero fields take the default named.
type LoadConfig struct {
	// Via is "http" (POST /v1/inboxes/{id}/inbound, JSON) or "smtp".
	// Default "http".
	Via string
	// Rate is messages per second; 0 sends as fast as Senders allow.
	Rate float64
	// Duration is how long messages are sent. Required.
	Duration time.Duration
	// Senders is the number of concurrent requests (one connection
	// each). Default 64: concurrent inbound requests share fsyncs.
	Senders int
	// BodyBytes is the size of the message text. Default 200 (an event
	// frame of ~750 bytes, the size DESIGN.md's ceilings assume).
	BodyBytes int
	// Run is the run id written into every marker.
	Run uint32
	// SMTPAddr is the server's SMTP address (Via "smtp").
	SMTPAddr string
	// Sources are local addresses SMTP connections come from, in turn
	// (the server caps connections per client IP). Default 127.0.0.1.
	Sources []netip.Addr
	// DropEvery and DupEvery inject faults to check the accounting (the
	// harness's own tests and --inject-* flags): every DropEvery-th
	// message is numbered and counted as accepted but never sent; every
	// DupEvery-th is sent twice with the same marker. 0: off.
	DropEvery int
	DupEvery  int
}

// LoadTarget is one inbox the generator sends to.
type LoadTarget struct {
	Key     string // the owning account's API key
	InboxID string
	Address string // for SMTP
}

// Generator sends inbound mail at a fixed rate or as fast as it can, each
// message carrying a marker (inbox, seq, send time). In rate mode the
// marker carries the message's intended send time, so a generator that
// falls behind shows as latency rather than hiding it (no coordinated
// omission); the lag itself is reported too.
//
// Concurrency: Run is called once; Stats may be called at any time from
// another goroutine.
type Generator struct {
	cfg     LoadConfig
	api     *API
	targets []LoadTarget

	next     atomic.Int64   // messages numbered so far
	seqs     []atomic.Int64 // per inbox: next seq
	accepted []atomic.Int64 // per inbox: seqs accepted (or dropped on purpose)

	sent, ok, failed, dropped, duped atomic.Int64
	lagMaxUs                         atomic.Int64
	lat                              *recorder // request → 202/250

	mu struct {
		sync.Mutex
		errs map[string]int64
	}
}

// NewGenerator prepares a generator over targets.
func NewGenerator(cfg LoadConfig, api *API, targets []LoadTarget) (*Generator, error) {
	if cfg.Via == "" {
		cfg.Via = "http"
	}
	if cfg.Senders <= 0 {
		cfg.Senders = 64
	}
	if cfg.BodyBytes <= 0 {
		cfg.BodyBytes = 200
	}
	if len(cfg.Sources) == 0 {
		cfg.Sources = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	switch {
	case len(targets) == 0:
		return nil, fmt.Errorf("the generator needs at least one inbox")
	case cfg.Via != "http" && cfg.Via != "smtp":
		return nil, fmt.Errorf("--via %q: want http or smtp", cfg.Via)
	case cfg.Via == "smtp" && cfg.SMTPAddr == "":
		return nil, fmt.Errorf("--via smtp: the server has no SMTP listener (none started, or --smtp not given)")
	case cfg.Duration <= 0:
		return nil, fmt.Errorf("the load needs a positive duration")
	}
	g := &Generator{cfg: cfg, api: api, targets: targets,
		seqs: make([]atomic.Int64, len(targets)), accepted: make([]atomic.Int64, len(targets)),
		lat: newRecorder(4)}
	g.mu.errs = map[string]int64{}
	return g, nil
}

// job is one message to send.
type job struct {
	inbox  int
	seq    uint32
	sentNs int64 // marker time; in rate mode the intended time
	twice  bool  // DupEvery: send it twice
	drop   bool  // DropEvery: count it, do not send it
}

// Run sends until the duration is over or ctx ends, then waits for the
// requests in flight.
func (g *Generator) Run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	jobs := make(chan job, g.cfg.Senders)
	for w := 0; w < g.cfg.Senders; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g.sender(ctx, w, jobs)
		}(w)
	}
	if g.cfg.Rate > 0 {
		g.schedule(ctx, jobs)
	} else {
		<-ctx.Done()
	}
	close(jobs)
	wg.Wait()
}

// number assigns the next message its inbox and seq.
func (g *Generator) number() job {
	i := g.next.Add(1) - 1
	in := int(i % int64(len(g.targets)))
	j := job{inbox: in, seq: uint32(g.seqs[in].Add(1) - 1)}
	j.twice = g.cfg.DupEvery > 0 && (i+1)%int64(g.cfg.DupEvery) == 0
	j.drop = g.cfg.DropEvery > 0 && (i+1)%int64(g.cfg.DropEvery) == 0
	return j
}

// schedule emits jobs at the rate; the channel's bound is the generator's
// queue: when senders fall behind, it blocks and the lag shows.
func (g *Generator) schedule(ctx context.Context, jobs chan<- job) {
	step := float64(time.Second) / g.cfg.Rate
	start := time.Now()
	for k := int64(0); ; k++ {
		due := start.Add(time.Duration(float64(k) * step))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		j := g.number()
		j.sentNs = due.UnixNano()
		select {
		case jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

func (g *Generator) sender(ctx context.Context, w int, jobs <-chan job) {
	var sm *smtpConn
	defer func() {
		if sm != nil {
			sm.close()
		}
	}()
	body := make([]byte, 0, g.cfg.BodyBytes+256)
	pad := strings.Repeat("x", g.cfg.BodyBytes)
	for {
		var j job
		if g.cfg.Rate > 0 {
			var ok bool
			if j, ok = <-jobs; !ok {
				return
			}
		} else {
			if ctx.Err() != nil {
				return
			}
			j = g.number()
		}
		now := time.Now().UnixNano()
		var lag int64
		if j.sentNs == 0 {
			j.sentNs = now
		} else if lag = max(0, (now-j.sentNs)/1000); lag > g.lagMaxUs.Load() {
			g.lagMaxUs.Store(lag) // racy max: good enough for a report
		}
		if j.drop {
			g.dropped.Add(1)
			g.accepted[j.inbox].Add(1)
			continue
		}
		m := marker{run: g.cfg.Run, inbox: int32(j.inbox), seq: j.seq, sent: j.sentNs, lag: lag}
		t := &g.targets[j.inbox]
		var err error
		for n := 0; n < 1+btoi(j.twice); n++ {
			g.sent.Add(1)
			start := time.Now()
			if g.cfg.Via == "smtp" {
				if sm == nil {
					src := g.cfg.Sources[w%len(g.cfg.Sources)]
					if sm, err = dialSMTP(g.cfg.SMTPAddr, src.AsSlice(), 30*time.Second); err != nil {
						break
					}
				}
				body = appendSMTPMessage(body[:0], t.Address, m, pad)
				if err = sm.send("load@bench.localhost", t.Address, body); err != nil {
					sm.close()
					sm = nil
				}
			} else {
				body = appendJSONInbound(body[:0], m, pad)
				var code int
				code, err = g.api.Inbound(t.Key, t.InboxID, body)
				if err == nil && code != 202 {
					err = fmt.Errorf("HTTP %d", code)
				}
			}
			g.lat.record(w, time.Since(start).Microseconds())
			if err != nil {
				break
			}
			if n == 1 {
				g.duped.Add(1)
			}
		}
		if err != nil {
			g.failed.Add(1)
			g.countErr(err)
			continue
		}
		g.ok.Add(1)
		g.accepted[j.inbox].Add(1)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (g *Generator) countErr(err error) {
	s := err.Error()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s = "timeout"
	}
	if len(s) > 100 {
		s = s[:100]
	}
	g.mu.Lock()
	g.mu.errs[s]++
	g.mu.Unlock()
}

// appendJSONInbound appends the JSON inbound body of a message.
func appendJSONInbound(dst []byte, m marker, pad string) []byte {
	dst = append(dst, `{"from":"load@bench.localhost","subject":"`...)
	dst = appendMarker(dst, m)
	dst = append(dst, `","text":"`...)
	dst = append(dst, pad...)
	return append(dst, `"}`...)
}

// appendSMTPMessage appends an RFC 5322 message (CRLF lines).
func appendSMTPMessage(dst []byte, to string, m marker, pad string) []byte {
	dst = append(dst, "From: load@bench.localhost\r\nTo: "...)
	dst = append(dst, to...)
	dst = append(dst, "\r\nSubject: "...)
	dst = appendMarker(dst, m)
	dst = append(dst, "\r\nMessage-ID: <"...)
	dst = appendMarker(dst, m)
	dst = append(dst, "@bench.localhost>\r\nDate: "...)
	dst = time.Unix(0, m.sent).UTC().AppendFormat(dst, time.RFC1123Z)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	for len(pad) > 0 { // lines of at most 76 characters
		n := min(76, len(pad))
		dst = append(dst, pad[:n]...)
		dst = append(dst, "\r\n"...)
		pad = pad[n:]
	}
	return dst
}

// LoadStats is a snapshot of a generator's counters.
type LoadStats struct {
	Numbered int64            `json:"numbered"` // messages numbered (sent, failed or dropped on purpose)
	Requests int64            `json:"requests"` // requests sent (a duplicate counts twice)
	Accepted int64            `json:"accepted"` // messages answered 202/250
	Failed   int64            `json:"failed"`   // messages that got an error or another status
	Dropped  int64            `json:"dropped,omitempty"`
	Duped    int64            `json:"duped,omitempty"`
	LagMaxMs float64          `json:"lag_max_ms"` // rate mode: latest a message left after its intended time
	Errors   map[string]int64 `json:"errors,omitempty"`
	// PerInbox is the number of seqs accepted per inbox (what
	// subscribers of that inbox must receive).
	PerInbox []int64 `json:"-"`
	// Latency is request → answer (ingest: parse, store, fsync).
	Latency         *hdrhistogram.Histogram `json:"-"`
	LatencyInterval *hdrhistogram.Histogram `json:"-"`
}

// Stats returns a snapshot and starts a new latency interval.
func (g *Generator) Stats() LoadStats {
	s := LoadStats{
		Numbered: g.next.Load(), Requests: g.sent.Load(), Accepted: g.ok.Load() + g.dropped.Load(), Failed: g.failed.Load(),
		Dropped: g.dropped.Load(), Duped: g.duped.Load(), LagMaxMs: float64(g.lagMaxUs.Load()) / 1000,
		Errors: map[string]int64{}, PerInbox: make([]int64, len(g.accepted)),
	}
	for i := range g.accepted {
		s.PerInbox[i] = g.accepted[i].Load()
	}
	g.mu.Lock()
	for k, v := range g.mu.errs {
		s.Errors[k] = v
	}
	g.mu.Unlock()
	s.Latency, s.LatencyInterval = g.lat.snapshot()
	return s
}

// expected is the number of first arrivals subscribers must see: for
// every inbox, the seqs accepted times the subscribers that expect it.
func expected(perInbox []int64, subscribers []int64) int64 {
	var n int64
	for i, a := range perInbox {
		if i < len(subscribers) {
			n += a * subscribers[i]
		}
	}
	return n
}

// mailboxName is a run-unique mailbox name (API.md: 3-30 of a-z0-9._-).
func mailboxName(run uint32, i int) string {
	return "b" + string(appendHex8(nil, run)) + "-" + strconv.Itoa(i)
}
