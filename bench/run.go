package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// env is one scenario run in progress: the server, the API client, the
// probe, the client pools, the generator or sink, and the result being
// filled.
type env struct {
	ctx   context.Context
	o     *Options
	out   io.Writer // progress lines
	res   *Result
	run   uint32
	start time.Time

	srv   *Server
	api   *API
	probe *Probe
	plan  *Plan
	ps    pools
	gen   atomic.Pointer[Generator]
	sink  *sink

	samp      *sampler
	loadStart float64  // seconds from start to the load's start
	logFile   *os.File // --server-log
}

func newRunID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}

func (e *env) logf(format string, args ...any) {
	if e.out != nil {
		fmt.Fprintf(e.out, "  [%5.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// startServer starts the server and the API client and probe.
func (e *env) startServer() error {
	o := e.o
	var logw io.Writer
	if o.ServerLog != "" {
		f, err := os.Create(o.ServerLog)
		if err != nil {
			return fmt.Errorf("cannot create --server-log: %w", err)
		}
		e.logFile, logw = f, f
	}
	perAccount := max(o.ConnsPerAccount, o.ServerCap)
	srv, err := StartServer(ServerConfig{
		Spec: o.Server, Bin: o.ServerBin, AdminToken: o.AdminToken, SMTPAddr: o.SMTP, PID: o.ServerPID,
		ConnsPerAccount: perAccount, PingInterval: o.PingInterval, PongTimeout: o.PingInterval, Args: o.ServerArgs, Log: logw,
		DataParent: o.DataParent,
	})
	if err != nil {
		return err
	}
	e.srv = srv
	e.res.Server = srv
	e.logf("server: %s %s (pid %d)", srv.Mode, srv.URL, srv.PID)
	if srv.DataDir != "" && o.FsyncProbe > 0 {
		p50, p99, mx, err := fsyncLatency(srv.DataDir, o.FsyncProbe)
		if err == nil {
			e.res.add("fsync_p50", "fsync on the data directory's filesystem, p50 (before the run)", float64(p50.Microseconds())/1000, "ms")
			e.res.add("fsync_p99", "fsync p99 (before the run)", float64(p99.Microseconds())/1000, "ms")
			e.res.add("fsync_max", "fsync max (before the run)", float64(mx.Microseconds())/1000, "ms")
		}
	}
	if srv.Shared {
		e.res.note("the server runs in this process (--server inproc): process figures (RSS, CPU, heap, goroutines) include the client side")
	}
	api, err := NewAPI(srv.URL, srv.AdminToken, o.Senders+32)
	if err != nil {
		return err
	}
	e.api = api
	// This process is a client from the start: it runs the senders, the
	// webhook sink and the publisher whether or not it also holds
	// WebSocket pools (the webhook and ingest scenarios start none).
	e.probe = &Probe{API: api, PID: srv.PID}
	// (With --server inproc this process is the server as well: the
	// note above says so.)
	e.probe.ClientPIDs = clientPIDs(nil)
	return nil
}

// clientPIDs is the client side's processes: this one and the pools',
// once each.
func clientPIDs(pools []int) []int {
	var out []int
	seen := map[int]bool{}
	for _, pid := range append([]int{os.Getpid()}, pools...) {
		if !seen[pid] {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	return out
}

// buildPlan creates the accounts, inboxes and subscriber specs.
func (e *env) buildPlan(cfg PlanConfig) error {
	t0 := time.Now()
	p, err := BuildPlan(e.ctx, e.api, e.run, cfg)
	if err != nil {
		return fmt.Errorf("cannot set up accounts and inboxes: %w", err)
	}
	e.plan = p
	e.res.Plan = p
	e.logf("plan: %d accounts, %d inboxes, %d subscribers (%s) in %.1fs", p.NAccounts, p.NInboxes, len(p.Clients), kindsText(p.Kinds), time.Since(t0).Seconds())
	return nil
}

func parseSources(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if pf, err := netip.ParsePrefix(part); err == nil {
			if !pf.Addr().Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(pf.Addr()) || pf.Bits() < 16 {
				return nil, fmt.Errorf("--sources %q: only loopback prefixes of /16 or narrower", part)
			}
			for a := pf.Masked().Addr(); pf.Contains(a); a = a.Next() {
				if b := a.As4(); b[3] != 0 && b[3] != 255 {
					out = append(out, a)
				}
			}
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil || !a.Is4() || a.As4()[0] != 127 {
			return nil, fmt.Errorf("--sources %q: want loopback addresses or prefixes (127.x.y.z, 127.0.1.0/28)", part)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--sources %q names no address", s)
	}
	return out, nil
}

// startPools connects the plan's subscribers and waits until every one is
// subscribed or failed.
func (e *env) startPools() error {
	o := e.o
	srcs, err := parseSources(o.Sources)
	if err != nil {
		return err
	}
	cfg := PoolConfig{URL: e.srv.URL, MoreURLs: o.MoreServers, Sources: srcs, Rate: o.ConnRate, Dialers: o.Dialers, Pollers: o.Pollers,
		Run: e.run, Abrupt: o.Abrupt, Validate: o.Validate}
	perProc := len(e.plan.Clients)/max(1, o.ClientProcs) + 64
	if e.srv.Shared && o.ClientProcs == 0 {
		perProc += len(e.plan.Clients) // the server's end of each connection
	}
	if lim := e.res.Machine.FDLimit; lim > 0 && uint64(perProc) > lim {
		e.res.note("about %d descriptors are needed in this process and the limit is %d: expect failures (use --server spawn and --client-procs)", perProc, lim)
	}
	ps, err := startPools(cfg, e.plan.Clients, o.ClientProcs)
	if err != nil {
		return err
	}
	e.ps = ps
	e.probe.ClientPIDs = clientPIDs(ps.PIDs())
	e.samp = startSampler(e)
	t0 := time.Now()
	timeout := 60 * time.Second
	if o.ConnRate > 0 {
		timeout += time.Duration(float64(len(e.plan.Clients)) / o.ConnRate * float64(time.Second))
	}
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	st, err := ps.Wait(ctx)
	el := time.Since(t0)
	e.res.add("subscribed", "subscribed connections", float64(st.Subscribed), "")
	e.res.add("connect_failed", "connect attempts failed", float64(st.Failed), "")
	e.res.add("connect_rate", "initial connects per second (achieved)", float64(st.Settled)/el.Seconds(), "/s")
	e.logf("connected: %d subscribed, %d failed in %.1fs", st.Subscribed, st.Failed, el.Seconds())
	if err != nil {
		return fmt.Errorf("connections did not settle within %s: %w", timeout, err)
	}
	return nil
}

// finish closes the client side and the server and completes the result.
func (e *env) finish() {
	if e.samp != nil {
		e.samp.stopAndWait()
		e.res.Series = e.samp.points
	}
	if e.ps != nil {
		if err := e.ps.Close(); err != nil {
			e.res.note("closing the client processes: %v", err)
		}
	}
	if e.sink != nil {
		e.sink.close()
	}
	if e.api != nil {
		e.api.Close()
	}
	if e.srv != nil {
		if err := e.srv.Stop(); err != nil {
			e.res.note("stopping the server: %v", err)
		}
	}
	if e.logFile != nil {
		_ = e.logFile.Close()
	}
	e.res.Seconds = time.Since(e.start).Seconds()
}

// startProfile starts a CPU profile of this process (--pprof with
// --server inproc: the server's code paths are the ones that matter).
func (e *env) startProfile(name string) func() {
	if e.o.PprofDir == "" {
		return func() {}
	}
	if err := os.MkdirAll(e.o.PprofDir, 0o755); err != nil {
		e.res.note("pprof: %v", err)
		return func() {}
	}
	f, err := os.Create(e.o.PprofDir + "/" + name + ".cpu.pprof")
	if err != nil {
		e.res.note("pprof: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		e.res.note("pprof: %v", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		e.res.note("CPU profile: %s", f.Name())
	}
}

func (e *env) heapProfile(name string) {
	if e.o.PprofDir == "" {
		return
	}
	_ = os.MkdirAll(e.o.PprofDir, 0o755)
	f, err := os.Create(e.o.PprofDir + "/" + name + ".heap.pprof")
	if err != nil {
		e.res.note("pprof: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err == nil {
		e.res.note("heap profile: %s", f.Name())
	}
}

// sampler records one Point a second.
type sampler struct {
	e      *env
	stop   chan struct{}
	done   chan struct{}
	points []Point // written by the sampler goroutine; read after stopAndWait

	lastT  time.Time
	lastP  PoolStats
	lastL  LoadStats
	lastS  Sample
	hasGen bool
}

func startSampler(e *env) *sampler {
	s := &sampler{e: e, stop: make(chan struct{}), done: make(chan struct{}), lastT: time.Now()}
	s.lastS = e.probe.Sample()
	go s.loop()
	return s
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.tick()
		}
	}
}

func (s *sampler) stopAndWait() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *sampler) tick() {
	e := s.e
	now := time.Now()
	dt := now.Sub(s.lastT).Seconds()
	if dt <= 0 {
		return
	}
	p := Point{T: math.Round(now.Sub(e.start).Seconds()*10) / 10}
	var st PoolStats
	switch {
	case e.ps != nil:
		st, _ = e.ps.Stats()
	case e.sink != nil:
		st = e.sink.stats()
	}
	p.Subscribed = st.Subscribed
	p.Connects = float64(st.Settled-s.lastP.Settled) / dt
	p.Closes = float64(st.ClientCloses+st.ServerCloses-s.lastP.ClientCloses-s.lastP.ServerCloses) / dt
	p.Events = float64(st.Events-s.lastP.Events) / dt
	if h := st.LatencyInterval; h != nil && h.TotalCount() > 0 {
		p.P50, p.P99, p.Max = usToMs(h.ValueAtQuantile(50)), usToMs(h.ValueAtQuantile(99)), usToMs(h.Max())
	}
	s.lastP = st
	if g := e.gen.Load(); g != nil {
		ls := g.Stats()
		if !s.hasGen {
			s.lastL, s.hasGen = LoadStats{}, true
		}
		p.Accepted = float64(ls.Accepted-s.lastL.Accepted) / dt
		if h := ls.LatencyInterval; h != nil && h.TotalCount() > 0 {
			p.IngestP99 = usToMs(h.ValueAtQuantile(99))
		}
		s.lastL = ls
	}
	smp := e.probe.Sample()
	p.ServerRSS, p.Goroutines, p.HeapInuse = smp.RSS, smp.Goroutines, smp.HeapInuse
	p.ServerCPU = math.Round((smp.CPUSeconds-s.lastS.CPUSeconds)/dt*1000) / 10
	p.ClientCPU = math.Round((smp.ClientCPU-s.lastS.ClientCPU)/dt*1000) / 10
	p.Deliveries = float64(smp.Deliveries-s.lastS.Deliveries) / dt
	busy := (smp.MachineBusy - s.lastS.MachineBusy) / dt * 100
	own := p.ServerCPU + p.ClientCPU
	if e.srv != nil && e.srv.Shared {
		own = p.ServerCPU // one process: server and client
	}
	p.OtherCPU = math.Round(max(0, busy-own)*10) / 10
	s.lastS, s.lastT = smp, now
	s.points = append(s.points, p)
}

// avgOver averages f over the points with T in [from, to] (seconds since
// start).
func avgOver(pts []Point, from, to float64, f func(Point) float64) float64 {
	var sum float64
	n := 0
	for _, p := range pts {
		if p.T >= from && p.T <= to {
			sum += f(p)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// histDiff returns the values recorded in b and not in a (b is a later
// snapshot of the same histogram).
func histDiff(a, b *hdrhistogram.Histogram) *hdrhistogram.Histogram {
	if b == nil {
		return newHist()
	}
	if a == nil {
		return b
	}
	sa, sb := a.Export(), b.Export()
	out := *sb
	out.Counts = append([]int64(nil), sb.Counts...)
	for i := range out.Counts {
		if i < len(sa.Counts) {
			out.Counts[i] -= sa.Counts[i]
		}
	}
	return hdrhistogram.Import(&out)
}

// drain waits, after the load, until subscribers have every expected
// first arrival, or no new one came for quiet, or limit passed. It
// returns the final stats.
func (e *env) drain(expect int64, quiet, limit time.Duration, unique func() (int64, error)) {
	deadline := time.Now().Add(limit)
	last, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) && e.ctx.Err() == nil {
		u, err := unique()
		if err != nil || u >= expect {
			return
		}
		if u != last {
			last, lastChange = u, time.Now()
		} else if time.Since(lastChange) > quiet {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling the counters
	}
}

// waitFor waits up to d (or ctx).
func (e *env) waitFor(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.ctx.Done():
	case <-t.C:
	}
}

// sink is the webhook receiver of the webhook scenario: a fasthttp
// server on 127.0.0.1 that counts deliveries per (inbox, seq) and
// records their latency. The stats reuse PoolStats' meaning (Events are
// requests; one "subscriber" per inbox: the webhook).
type sink struct {
	srv     interface{ Shutdown() error }
	url     string
	run     uint32
	lat     *recorder
	latSent *recorder

	secrets []string // per inbox: the webhook secret (--verify-signature)

	winFrom, winTo                                              atomic.Int64
	events, unique, dups, unexpected, foreign, unparsed, badSig atomic.Int64
	mu                                                          struct {
		sync.Mutex
		sets map[int32]*seqSet
	}
	done chan struct{}
}

func (s *sink) stats() PoolStats {
	st := PoolStats{Events: s.events.Load(), Unique: s.unique.Load(), Duplicates: s.dups.Load(),
		Unexpected: s.unexpected.Load(), Foreign: s.foreign.Load(), Unparsed: s.unparsed.Load(),
		Errors: map[string]int64{}}
	if n := s.badSig.Load(); n > 0 {
		st.Errors["bad webhook signature"] = n
	}
	st.Latency, st.LatencyInterval = s.lat.snapshot()
	st.LatencySent, _ = s.latSent.snapshot()
	return st
}
