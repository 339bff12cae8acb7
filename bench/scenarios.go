package bench

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// driveGC makes the server finish a GC cycle by scraping /metrics (each
// scrape allocates) until go_gc_duration_seconds_count moves, and returns
// the reading taken right after: its heap is live data plus at most a few
// scrapes of garbage. ok is false when no cycle ended within limit.
func (e *env) driveGC(limit time.Duration) (Sample, bool) {
	first := e.probe.Sample()
	deadline := time.Now().Add(limit)
	var mu sync.Mutex
	var got *Sample
	_ = parallel(e.ctx, 1<<30, 4, func(int) error {
		s := e.probe.Sample()
		mu.Lock()
		defer mu.Unlock()
		if got != nil {
			return errDone
		}
		if s.GCCount > first.GCCount {
			got = &s
			return errDone
		}
		if time.Now().After(deadline) || s.MetricsError != "" {
			return errDone
		}
		return nil
	})
	if got == nil {
		return e.probe.Sample(), false
	}
	return *got, true
}

var errDone = fmt.Errorf("done")

// liveHeap is this process's live heap after a GC (0 when !ok): the
// client side's own cost, when the pools live here and the server does
// not.
func liveHeap(ok bool) int64 {
	if !ok {
		return 0
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// reading takes the server reading used for per-connection figures.
// With --gc it drives three GC cycles and keeps the smallest heap and
// stack figures (the live floor; a reading can carry a few scrapes of
// garbage) with the last reading's other figures.
func (e *env) reading(what string) Sample {
	if !e.o.GC {
		s := e.probe.Sample()
		e.res.Samples = append(e.res.Samples, s)
		return s
	}
	var best Sample
	for i := 0; i < 3; i++ {
		s, ok := e.driveGC(60 * time.Second)
		if !ok {
			e.res.note("%s: no GC cycle ended within 60s of scraping; the heap reading includes garbage", what)
		}
		if i == 0 {
			best = s
			continue
		}
		hi, ha, si := min(best.HeapInuse, s.HeapInuse), min(best.HeapAlloc, s.HeapAlloc), min(best.StackInuse, s.StackInuse)
		best = s
		best.HeapInuse, best.HeapAlloc, best.StackInuse = hi, ha, si
	}
	e.res.Samples = append(e.res.Samples, best)
	return best
}

// startAndPlan starts the server and creates the run's accounts, inboxes
// and subscription plan. With onePerAccount, --inboxes 0 means one inbox
// per account (connect and churn).
func (e *env) startAndPlan(onePerAccount bool) error {
	o := e.o
	if err := e.startServer(); err != nil {
		return err
	}
	mix, _ := ParseMix(o.Mix)
	inboxes := o.Inboxes
	if onePerAccount && inboxes <= 0 {
		inboxes = max(1, (o.Conns+o.ConnsPerAccount-1)/o.ConnsPerAccount)
	}
	return e.buildPlan(PlanConfig{Conns: o.Conns, Inboxes: inboxes, ConnsPerAccount: o.ConnsPerAccount, Mix: mix})
}

func runConnect(e *env) error {
	o := e.o
	if err := e.startAndPlan(true); err != nil {
		return err
	}
	base := e.reading("baseline")
	clientBase := liveHeap(o.ClientProcs == 0 && !e.srv.Shared)
	stopProf := e.startProfile("connect")
	err := e.startPools()
	stopProf()
	if err != nil {
		return err
	}
	e.waitFor(o.Settle)
	after := e.reading("connected")
	e.heapProfile("connect")
	st, _ := e.ps.Stats()
	n := float64(st.Subscribed)
	e.res.Latency["connect"] = summarize(st.Connect, true)
	if n > 0 {
		per := func(key, name string, a, b int64, unit string) float64 {
			v := float64(b-a) / n
			e.res.add(key, name, v, unit)
			return v
		}
		rss := per("rss_per_conn", "server RSS per connection", base.RSS, after.RSS, "B")
		hi := per("heap_inuse_per_conn", "server Go heap in use per connection", base.HeapInuse, after.HeapInuse, "B")
		per("heap_alloc_per_conn", "server Go heap allocated per connection", base.HeapAlloc, after.HeapAlloc, "B")
		si := per("stack_per_conn", "server goroutine stacks per connection", base.StackInuse, after.StackInuse, "B")
		e.res.add("heap_stack_per_conn", "server heap in use + stacks per connection", hi+si, "B")
		g := float64(after.Goroutines-base.Goroutines) / n
		e.res.add("goroutines_per_conn", "server goroutines per connection", g, "")
		e.res.add("server_goroutines", "server goroutines (with N connections)", float64(after.Goroutines), "")
		per("tcp_mem_per_conn", "kernel TCP buffer memory per connection (sockstat)", base.SockMem, after.SockMem, "B")
		per("slab_per_conn", "kernel socket slabs per connection (both ends)", base.SlabSock, after.SlabSock, "B")
		per("client_rss_per_conn", "client RSS per connection", base.ClientRSS, after.ClientRSS, "B")
		if clientBase > 0 {
			per("client_heap_per_conn", "client Go heap (live, after GC) per connection", clientBase, liveHeap(true), "B")
		}
		e.res.add("server_rss", "server RSS with N connections", float64(after.RSS), "B")
		if !e.srv.Shared && e.srv.PID > 0 {
			e.res.check("RSS per idle subscribed connection ≤ 4 KB", rss <= 4000, "%.0f B", rss)
		}
		e.res.check("Go heap + stacks per connection ≤ 3 KiB", hi+si <= 3072, "%.0f B", hi+si)
		e.res.check("no goroutine per connection", g < 0.01, "%.4f goroutines per connection", g)
	}
	if o.Hold > 0 {
		e.logf("holding %d connections for %s", st.Subscribed, o.Hold)
		p0 := st.Pings
		e.waitFor(o.Hold)
		end, _ := e.ps.Stats()
		e.res.add("pings_answered", "server pings answered while holding", float64(end.Pings-p0), "")
		e.res.add("held", "connections still subscribed after holding", float64(end.Subscribed), "")
		e.res.add("server_closes", "connections the server closed", float64(end.ServerCloses), "")
		e.res.check("connections held", end.Subscribed == st.Subscribed, "%d of %d still subscribed after %s", end.Subscribed, st.Subscribed, o.Hold)
		st = end
	}
	e.mergeErrors("", st.Errors)
	e.mergeCloses(st.Closes)
	return nil
}

// loadPhase runs the generator over the plan's inboxes for warmup +
// duration, with the latency window on the measured part, then drains.
// behave, when set, starts at the end of the warm-up and stops with the
// load.
func (e *env) loadPhase(behave *Behaviour) (LoadStats, PoolStats, float64, error) {
	o := e.o
	srcs, _ := parseSources(o.Sources)
	g, err := NewGenerator(LoadConfig{
		Via: o.Via, Rate: o.Rate, Duration: o.Warmup + o.Duration, Senders: o.Senders, BodyBytes: o.BodyBytes,
		Run: e.run, SMTPAddr: e.srv.SMTPAddr, Sources: srcs, DropEvery: o.InjectDrop, DupEvery: o.InjectDup,
	}, e.api, e.plan.Inboxes)
	if err != nil {
		return LoadStats{}, PoolStats{}, 0, err
	}
	start := time.Now()
	e.loadStart = start.Sub(e.start).Seconds()
	from, to := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
	if e.ps != nil {
		_ = e.ps.SetWindow(from.UnixNano(), to.UnixNano())
	}
	if e.sink != nil {
		e.sink.setWindow(from.UnixNano(), to.UnixNano())
	}
	e.gen.Store(g)
	e.logf("load: %s at %s for %s (+%s warm-up), %d senders", o.Via, rateText(o.Rate), o.Duration, o.Warmup, o.Senders)
	var wg sync.WaitGroup
	if behave != nil && e.ps != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.waitFor(o.Warmup)
			_ = e.ps.StartBehaviour(*behave)
		}()
	}
	stopProf := e.startProfile(e.res.Scenario)
	g.Run(e.ctx)
	stopProf()
	wg.Wait()
	if behave != nil && e.ps != nil {
		_ = e.ps.StopBehaviour()
	}
	loadSecs := time.Since(start).Seconds()
	ls := g.Stats()
	exp := expected(ls.PerInbox, e.plan.Subscribers)
	e.logf("load done: %d accepted, %d failed; draining (expect %d first arrivals)", ls.Accepted, ls.Failed, exp)
	unique := func() (int64, error) {
		if e.sink != nil {
			return e.sink.unique.Load(), nil
		}
		if e.ps == nil {
			return exp, nil
		}
		st, err := e.ps.Stats()
		return st.Unique, err
	}
	e.drain(exp, max(2*time.Second, o.Drain/3), o.Drain, unique)
	// The sampler's last second and the final counts.
	var st PoolStats
	if e.ps != nil {
		st, _ = e.ps.Stats()
	} else if e.sink != nil {
		st = e.sink.stats()
	}
	return ls, st, loadSecs, nil
}

func rateText(r float64) string {
	if r <= 0 {
		return "max rate"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + "/s"
}

// loadFigures records what every load scenario reports.
func (e *env) loadFigures(ls LoadStats, st PoolStats, loadSecs float64, subscribers bool) {
	o := e.o
	e.res.Latency["ingest"] = summarize(ls.Latency, true)
	e.res.add("accepted", "inbound messages accepted", float64(ls.Accepted), "")
	e.res.add("accepted_per_s", "inbound accepted per second", float64(ls.Accepted)/loadSecs, "/s")
	e.res.add("send_failed", "inbound requests failed", float64(ls.Failed), "")
	if o.Rate > 0 {
		e.res.add("lag_max", "generator lag behind schedule (max)", ls.LagMaxMs, "ms")
		achieved := float64(ls.Accepted) / loadSecs
		e.res.check("offered rate sustained", achieved >= 0.97*o.Rate && ls.LagMaxMs < 1000,
			"%.0f of %.0f/s accepted, generator lag max %.0f ms", achieved, o.Rate, ls.LagMaxMs)
	}
	e.mergeErrors("inbound: ", ls.Errors)
	if !subscribers {
		return
	}
	exp := expected(ls.PerInbox, e.plan.Subscribers)
	lost := max(0, exp-st.Unique)
	e.res.Latency["e2e"] = summarize(st.Latency, true)
	if o.Rate > 0 && st.LatencySent != nil {
		// From the actual send time: what the server did with the
		// messages the generator managed to send (equal to e2e when it
		// kept its schedule).
		e.res.Latency["e2e_sent"] = summarize(st.LatencySent, true)
	}
	e.res.add("expected", "deliveries expected", float64(exp), "")
	e.res.add("delivered", "first arrivals", float64(st.Unique), "")
	if d := o.Duration.Seconds(); d > 0 {
		e.res.add("delivered_per_s", "first arrivals per second (measured window)", float64(st.Latency.TotalCount())/d, "/s")
	}
	e.res.add("frames_per_s", "event frames per second (whole load)", float64(st.Events)/loadSecs, "/s")
	e.res.add("lost", "lost", float64(lost), "")
	e.res.add("duplicates", "duplicates", float64(st.Duplicates), "")
	e.res.add("unexpected", "events outside the subscription", float64(st.Unexpected), "")
	if st.Uncertain+st.Foreign+st.Unparsed+st.Invalid > 0 {
		e.res.add("uncertain", "late-or-duplicate (window written off)", float64(st.Uncertain), "")
		e.res.add("foreign", "events of other runs", float64(st.Foreign), "")
		e.res.add("unparsed", "events without a marker", float64(st.Unparsed), "")
		e.res.add("invalid", "event payloads that are not JSON", float64(st.Invalid), "")
	}
	if o.InjectDrop > 0 || o.InjectDup > 0 {
		e.res.note("fault injection on: %d messages counted but not sent (must be lost), %d sent twice (must be duplicates)", ls.Dropped, ls.Duped)
	}
	e.mergeErrors("", st.Errors)
	e.mergeCloses(st.Closes)
	// The measured window in series time (a point covers the second
	// before its T).
	w0, w1 := e.loadStart+o.Warmup.Seconds()+1, e.loadStart+(o.Warmup+o.Duration).Seconds()
	e.res.add("server_cpu", "server CPU (measured window)", avgOver(e.res.Series, w0, w1, func(p Point) float64 { return p.ServerCPU }), "% of a core")
	if !e.srv.Shared {
		e.res.add("client_cpu", "client CPU (measured window)", avgOver(e.res.Series, w0, w1, func(p Point) float64 { return p.ClientCPU }), "% of a core")
	}
	e.res.add("other_cpu", "other processes' CPU (measured window)", avgOver(e.res.Series, w0, w1, func(p Point) float64 { return p.OtherCPU }), "% of a core")
}

func runFanout(e *env) error {
	o := e.o
	if err := e.startAndPlan(false); err != nil {
		return err
	}
	if err := e.startPools(); err != nil {
		return err
	}
	ls, st, secs, err := e.loadPhase(nil)
	if err != nil {
		return err
	}
	e.samp.stopAndWait()
	e.res.Series = e.samp.points
	e.loadFigures(ls, st, secs, true)
	subsPerInbox := float64(len(e.plan.Clients)) / float64(len(e.plan.Inboxes))
	e.res.add("subscribers_per_inbox", "subscribers per inbox (mean)", subsPerInbox, "")
	lost, dups := e.res.Figure("lost"), e.res.Figure("duplicates")
	e.res.check("no loss", lost == 0, "%.0f lost", lost)
	e.res.check("no duplicates", dups == 0, "%.0f duplicates", dups)
	e.res.check("subscriptions honoured", e.res.Figure("unexpected") == 0, "%.0f events outside a subscription", e.res.Figure("unexpected"))
	p99 := e.res.Latency["e2e"].P99
	switch {
	case o.Rate == 1000 && subsPerInbox == 10:
		e.res.check("p99 ≤ 5 ms at 1,000 inbound/s × 10 subscribers", p99 <= 5, "p99 %.3f ms", p99)
	case o.Rate == 5000:
		e.res.check("p99 ≤ 10 ms at 5,000 inbound/s", p99 <= 10, "p99 %.3f ms", p99)
	case o.Rate == 0:
		d := e.res.Figure("delivered_per_s")
		e.res.check("≥ 70,000 deliveries/s", d >= 70000, "%.0f deliveries/s", d)
	}
	return nil
}

func runReplay(e *env) error {
	o := e.o
	if err := e.startAndPlan(false); err != nil {
		return err
	}
	if err := e.startPools(); err != nil {
		return err
	}
	before, _ := e.ps.Stats()
	b := Behaviour{StormEvery: o.StormEvery, StormFraction: o.StormFraction, StormPause: o.StormPause}
	ls, _, secs, err := e.loadPhase(&b)
	if err != nil {
		return err
	}
	// Reconnections still in flight settle before the counts are final.
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	st, _ := e.ps.Wait(ctx)
	cancel()
	e.samp.stopAndWait()
	e.res.Series = e.samp.points
	e.loadFigures(ls, st, secs, true)
	e.res.Latency["reconnect"] = summarize(histDiff(before.Connect, st.Connect), true)
	e.res.add("storm_closes", "connections dropped by storms", float64(st.ClientCloses), "")
	e.res.add("reconnects", "reconnections", float64(st.Reconnects), "")
	e.res.add("reconnect_failed", "reconnections failed", float64(st.Failed-before.Failed), "")
	lost := e.res.Figure("lost")
	e.res.check("no loss across reconnect storms", lost == 0, "%.0f lost", lost)
	return nil
}

func runChurn(e *env) error {
	o := e.o
	if err := e.startAndPlan(true); err != nil {
		return err
	}
	if err := e.startPools(); err != nil {
		return err
	}
	e.waitFor(time.Second)
	base := e.reading("before churn")
	before, _ := e.ps.Stats()
	t0 := time.Now()
	_ = e.ps.StartBehaviour(Behaviour{ChurnRate: o.ChurnRate})
	e.logf("churn: %g connections/s for %s", o.ChurnRate, o.Duration)
	stopProf := e.startProfile("churn")
	e.waitFor(o.Duration)
	stopProf()
	_ = e.ps.StopBehaviour()
	secs := time.Since(t0).Seconds()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	st, _ := e.ps.Wait(ctx)
	cancel()
	e.waitFor(o.Settle)
	after := e.reading("after churn")
	e.samp.stopAndWait()
	e.res.Series = e.samp.points
	closes := float64(st.ClientCloses - before.ClientCloses)
	connects := float64(st.Settled - before.Settled)
	e.res.add("churn_target", "churn target", o.ChurnRate, "/s")
	e.res.add("closes_per_s", "closes per second (achieved)", closes/secs, "/s")
	e.res.add("connects_per_s", "reconnects per second during churn (achieved)", connects/secs, "/s")
	e.res.add("churn_failed", "reconnections failed", float64(st.Failed-before.Failed), "")
	e.res.add("subscribed_end", "subscribed at the end", float64(st.Subscribed), "")
	e.res.add("goroutines_delta", "server goroutines after − before", float64(after.Goroutines-base.Goroutines), "")
	e.res.add("heap_inuse_delta", "server heap in use after − before", float64(after.HeapInuse-base.HeapInuse), "B")
	e.res.add("rss_delta", "server RSS after − before", float64(after.RSS-base.RSS), "B")
	e.res.add("time_wait", "sockets in TIME_WAIT at the end", float64(after.TCPTimeWait), "")
	e.res.Latency["connect"] = summarize(histDiff(before.Connect, st.Connect), true)
	e.res.check("churn rate reached", closes/secs >= 0.95*o.ChurnRate, "%.0f of %.0f/s", closes/secs, o.ChurnRate)
	e.res.check("every reconnection succeeded", st.Failed == before.Failed, "%d failed", st.Failed-before.Failed)
	e.res.check("no goroutine growth", after.Goroutines-base.Goroutines <= 10, "%+d goroutines", after.Goroutines-base.Goroutines)
	e.mergeErrors("", st.Errors)
	e.mergeCloses(st.Closes)
	return nil
}

func runIngest(e *env) error {
	o := e.o
	if err := e.startServer(); err != nil {
		return err
	}
	if err := e.buildPlan(PlanConfig{Inboxes: o.Inboxes, Accounts: o.Accounts, ConnsPerAccount: 1}); err != nil {
		return err
	}
	e.samp = startSampler(e)
	ls, _, secs, err := e.loadPhase(nil)
	if err != nil {
		return err
	}
	e.samp.stopAndWait()
	e.res.Series = e.samp.points
	e.loadFigures(ls, PoolStats{}, secs, false)
	e.res.add("via", "inbound path (1 http, 2 smtp)", map[string]float64{"http": 1, "smtp": 2}[o.Via], "")
	return nil
}

func runWebhook(e *env) error {
	o := e.o
	if err := e.startServer(); err != nil {
		return err
	}
	if err := e.buildPlan(PlanConfig{Inboxes: o.Inboxes, Accounts: o.Accounts, ConnsPerAccount: 1}); err != nil {
		return err
	}
	sk, err := startSink(e.run, len(e.plan.Inboxes))
	if err != nil {
		return err
	}
	e.sink = sk
	secrets := map[string]string{}
	for _, a := range e.plan.Accounts {
		sec, err := e.api.PutWebhook(a.Key, sk.url)
		if err != nil {
			return fmt.Errorf("cannot set the webhook: %w", err)
		}
		secrets[a.Key] = sec
	}
	if o.VerifySig {
		sk.secrets = make([]string, len(e.plan.Inboxes))
		for i, in := range e.plan.Inboxes {
			sk.secrets[i] = secrets[in.Key]
		}
	}
	e.plan.Subscribers = make([]int64, len(e.plan.Inboxes))
	for i := range e.plan.Subscribers {
		e.plan.Subscribers[i] = 1 // the account's webhook
	}
	e.samp = startSampler(e)
	ls, st, secs, err := e.loadPhase(nil)
	if err != nil {
		return err
	}
	e.samp.stopAndWait()
	e.res.Series = e.samp.points
	e.loadFigures(ls, st, secs, true)
	lost := e.res.Figure("lost")
	e.res.check("no loss", lost == 0, "%.0f lost", lost)
	if o.VerifySig {
		e.res.check("signatures verify", sk.badSig.Load() == 0, "%d bad signatures", sk.badSig.Load())
	}
	return nil
}

// startSink starts the webhook receiver.
func startSink(run uint32, inboxes int) (*sink, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot start the webhook sink: %w", err)
	}
	s := &sink{url: "http://" + ln.Addr().String() + "/hook", run: run, lat: newRecorder(2), latSent: newRecorder(2), done: make(chan struct{})}
	s.mu.sets = make(map[int32]*seqSet, inboxes)
	s.winTo.Store(1<<63 - 1)
	srv := &fasthttp.Server{
		Handler:            s.handle,
		Name:               "mailwire-bench-sink",
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        10 * time.Second,
		MaxRequestBodySize: 32 << 20,
	}
	s.srv = srv
	go func() { defer close(s.done); _ = srv.Serve(ln) }()
	return s, nil
}

func (s *sink) close() {
	_ = s.srv.Shutdown()
	<-s.done
}

func (s *sink) setWindow(from, to int64) {
	s.winFrom.Store(from)
	s.winTo.Store(to)
}

func (s *sink) handle(ctx *fasthttp.RequestCtx) {
	now := time.Now().UnixNano()
	s.events.Add(1)
	body := ctx.PostBody()
	m, ok := findMarker(body)
	switch {
	case !ok:
		s.unparsed.Add(1)
	case m.run != s.run:
		s.foreign.Add(1)
	case m.inbox < 0:
		s.unexpected.Add(1)
	default:
		if s.secrets != nil && int(m.inbox) < len(s.secrets) {
			mac := hmac.New(sha256.New, []byte(s.secrets[m.inbox]))
			mac.Write(ctx.Request.Header.Peek("X-Timestamp"))
			mac.Write([]byte("."))
			mac.Write(body)
			if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), ctx.Request.Header.Peek("X-Signature")) {
				s.badSig.Add(1)
			}
		}
		s.mu.Lock()
		set := s.mu.sets[m.inbox]
		if set == nil {
			set = &seqSet{}
			s.mu.sets[m.inbox] = set
		}
		v := set.add(m.seq)
		s.mu.Unlock()
		switch v {
		case seqFresh:
			s.unique.Add(1)
			if m.sent >= s.winFrom.Load() && m.sent < s.winTo.Load() {
				us := (now - m.sent) / 1000
				s.lat.record(int(m.seq), us)
				s.latSent.record(int(m.seq), us-m.lag)
			}
		default:
			s.dups.Add(1)
		}
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}
