package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// setup starts a real node (Pebble in t.TempDir(), sockets on 127.0.0.1)
// and creates a plan on it.
func setup(t *testing.T, cfg PlanConfig, mods ...func(*app.Config)) (*testserver.Server, *API, *Plan) {
	t.Helper()
	mods = append([]func(*app.Config){func(c *app.Config) { c.WS.MaxConnsPerAccount = max(10, cfg.ConnsPerAccount) }}, mods...)
	s := testserver.Start(t, mods...)
	api, err := NewAPI(s.URL, testserver.AdminToken, 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	plan, err := BuildPlan(context.Background(), api, newRunID(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, api, plan
}

func startPool(t *testing.T, url string, run uint32, specs []ClientSpec) *Pool {
	t.Helper()
	p, err := NewPool(PoolConfig{URL: url, Run: run, Validate: true,
		Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	p.Add(specs)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := p.Wait(ctx)
	if err != nil || n != len(specs) {
		t.Fatalf("subscribed %d of %d: %v %v", n, len(specs), err, p.Stats().Errors)
	}
	return p
}

// TestLossAndDuplicatesAreCountedExactly drops and duplicates messages on
// purpose at the source (counted as sent but never sent; sent twice with
// the same marker) and checks that the subscribers' accounting finds
// exactly those, through the real server.
func TestLossAndDuplicatesAreCountedExactly(t *testing.T) {
	_, api, plan := setup(t, PlanConfig{Conns: 30, Inboxes: 3, ConnsPerAccount: 10, Mix: Mix{Inbox: 1}})
	for j, n := range plan.Subscribers {
		if n != 10 {
			t.Fatalf("inbox %d has %d subscribers, want 10", j, n)
		}
	}
	p := startPool(t, api.Base(), plan.Run, plan.Clients)
	g, err := NewGenerator(LoadConfig{Rate: 300, Duration: 700 * time.Millisecond, Senders: 8, Run: plan.Run,
		DropEvery: 7, DupEvery: 5}, api, plan.Inboxes)
	if err != nil {
		t.Fatal(err)
	}
	g.Run(context.Background())
	ls := g.Stats()
	if ls.Failed != 0 || ls.Dropped == 0 || ls.Duped == 0 {
		t.Fatalf("load: %+v", ls)
	}
	exp := expected(ls.PerInbox, plan.Subscribers)
	wantLost, wantDup := 10*ls.Dropped, 10*ls.Duped
	testserver.WaitFor(t, 15*time.Second, "every sent event and duplicate to arrive", func() bool {
		st := p.Stats()
		return st.Unique >= exp-wantLost && st.Duplicates >= wantDup
	})
	// Nothing more may arrive than what was sent.
	st := p.Stats()
	if lost := exp - st.Unique; lost != wantLost {
		t.Errorf("lost %d, want %d (%d messages dropped × 10 subscribers)", lost, wantLost, ls.Dropped)
	}
	if st.Duplicates != wantDup {
		t.Errorf("duplicates %d, want %d (%d messages sent twice × 10 subscribers)", st.Duplicates, wantDup, ls.Duped)
	}
	if st.Unexpected+st.Foreign+st.Unparsed+st.Invalid+st.Uncertain != 0 {
		t.Errorf("stray events: %+v", st)
	}
	if st.Events != st.Unique+st.Duplicates {
		t.Errorf("%d frames, %d unique + %d duplicates", st.Events, st.Unique, st.Duplicates)
	}
}

// TestFanoutOverSMTP sends the load over SMTP (when the node starts an
// SMTP listener) and checks every event arrives once.
func TestFanoutOverSMTP(t *testing.T) {
	s, api, plan := setup(t, PlanConfig{Conns: 20, Inboxes: 4, ConnsPerAccount: 10, Mix: Mix{All: 1, Inbox: 1}},
		func(c *app.Config) { c.SMTP.Addr = "127.0.0.1:0" })
	if s.SMTPAddr() == "" {
		t.Skip("this node starts no SMTP listener")
	}
	p := startPool(t, api.Base(), plan.Run, plan.Clients)
	g, err := NewGenerator(LoadConfig{Via: "smtp", SMTPAddr: s.SMTPAddr(), Rate: 200, Duration: 500 * time.Millisecond,
		Senders: 4, Run: plan.Run}, api, plan.Inboxes)
	if err != nil {
		t.Fatal(err)
	}
	g.Run(context.Background())
	ls := g.Stats()
	if ls.Failed != 0 || ls.Accepted == 0 {
		t.Fatalf("load: %+v", ls)
	}
	exp := expected(ls.PerInbox, plan.Subscribers)
	testserver.WaitFor(t, 10*time.Second, "every event", func() bool { return p.Stats().Unique == exp })
	if st := p.Stats(); st.Duplicates+st.Unexpected+st.Invalid != 0 {
		t.Errorf("stray events: %+v", st)
	}
}

// delayProxy forwards TCP to target, holding every byte from the server
// for delay before passing it on (the client's bytes go straight through).
type delayProxy struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &delayProxy{ln: ln}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			d.mu.Lock()
			d.conns = append(d.conns, c, u)
			d.mu.Unlock()
			d.wg.Add(3)
			go func() { defer d.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
			type chunk struct {
				at time.Time
				b  []byte
			}
			q := make(chan chunk, 4096)
			go func() {
				defer d.wg.Done()
				defer close(q)
				for {
					buf := make([]byte, 32<<10)
					n, err := u.Read(buf)
					if n > 0 {
						q <- chunk{time.Now(), buf[:n]}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() {
				defer d.wg.Done()
				defer c.Close()
				for ch := range q {
					time.Sleep(time.Until(ch.at.Add(delay))) // the injected delay itself
					if _, err := c.Write(ch.b); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.mu.Lock()
		for _, c := range d.conns {
			c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return d
}

// TestLatencyMatchesInjectedDelay subscribes two pools to the same inbox,
// one directly and one through a proxy that holds the server's bytes for
// a known delay, and checks the measured end-to-end latency: never below
// the delay through the proxy, and the fastest frames apart by the delay.
func TestLatencyMatchesInjectedDelay(t *testing.T) {
	const delay = 40 * time.Millisecond
	s, api, plan := setup(t, PlanConfig{Conns: 10, Inboxes: 1, ConnsPerAccount: 10, Mix: Mix{Inbox: 1}})
	proxy := startDelayProxy(t, strings.TrimPrefix(s.URL, "http://"), delay)
	direct := startPool(t, api.Base(), plan.Run, plan.Clients[:5])
	delayed := startPool(t, "http://"+proxy.ln.Addr().String(), plan.Run, plan.Clients[5:])
	g, err := NewGenerator(LoadConfig{Rate: 100, Duration: time.Second, Senders: 4, Run: plan.Run}, api, plan.Inboxes)
	if err != nil {
		t.Fatal(err)
	}
	g.Run(context.Background())
	ls := g.Stats()
	exp := 5 * ls.Accepted
	testserver.WaitFor(t, 10*time.Second, "every event on both pools", func() bool {
		return direct.Stats().Unique == exp && delayed.Stats().Unique == exp
	})
	d, p := direct.Stats().Latency, delayed.Stats().Latency
	if d.TotalCount() != exp || p.TotalCount() != exp {
		t.Fatalf("recorded %d and %d latencies, want %d each", d.TotalCount(), p.TotalCount(), exp)
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	t.Logf("direct p50 %.2f ms min %.2f; delayed p50 %.2f ms min %.2f", ms(d.ValueAtQuantile(50)), ms(d.Min()), ms(p.ValueAtQuantile(50)), ms(p.Min()))
	if min := time.Duration(p.Min()) * time.Microsecond; min < delay {
		t.Errorf("a frame held %s arrived with latency %s", delay, min)
	}
	// The fastest frames show the delay best: a loaded machine (the whole
	// suite runs in parallel) adds scheduling noise to every median, so
	// the tolerance grows with the direct pool's own spread.
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	diff := us(p.Min() - d.Min())
	slack := 10*time.Millisecond + us(d.ValueAtQuantile(50)-d.Min())
	if diff < delay-2*time.Millisecond || diff > delay+slack {
		t.Errorf("the fastest frame through the proxy is %s slower than the fastest direct one, want %s (+%s)", diff, delay, slack)
	}
}

// TestWorkerProcesses runs the connect scenario with its subscribers in two
// worker processes (this test binary, started as workers) against an
// external server, and checks the merged figures.
func TestWorkerProcesses(t *testing.T) {
	s := testserver.Start(t)
	o := baseDefaults()
	findScenario("connect").defaults(&o)
	o.Server, o.AdminToken = s.URL, testserver.AdminToken
	o.Conns, o.ClientProcs, o.Hold, o.Settle, o.GC, o.Sources = 40, 2, 0, 0, false, "127.0.0.1"
	res, err := Run(context.Background(), "connect", &o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Figure("subscribed"); n != 40 {
		t.Errorf("subscribed %v, want 40; errors %v", n, res.Errors)
	}
	if res.Latency["connect"].Count != 40 {
		t.Errorf("connect latencies merged: %d, want 40", res.Latency["connect"].Count)
	}
	if res.Server.Mode != "external" || res.Server.PID != os.Getpid() {
		t.Errorf("server %+v: the in-test server's process should be found by its port", res.Server)
	}
}

// TestStandardQuick runs every scenario (the quick standard set) against
// in-process servers and checks the records, the charts and the doc region.
func TestStandardQuick(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(doc, []byte("# Benchmarks\n\nintro\n\n"+docBegin+"\nold\n"+docEnd+"\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"standard", "--quick", "--server", "inproc", "--out", dir, "--update-doc", doc}, &out, &errb)
	t.Log(out.String())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	read := func(name string) *Result {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if h, err := os.ReadFile(filepath.Join(dir, name+".html")); err != nil || !bytes.Contains(h, []byte("<svg")) {
			t.Errorf("%s.html: %v", name, err)
		}
		return &r
	}
	c := read("connect")
	if c.Figure("subscribed") != 60 || c.Figure("held") != 60 || c.Figure("pings_answered") == 0 {
		t.Errorf("connect: subscribed %v, held %v, pings %v", c.Figure("subscribed"), c.Figure("held"), c.Figure("pings_answered"))
	}
	for _, name := range []string{"fanout", "webhook", "replay"} {
		r := read(name)
		if r.Figure("expected") == 0 || r.Figure("lost") != 0 || r.Latency["e2e"].Count == 0 {
			t.Errorf("%s: expected %v lost %v latencies %d", name, r.Figure("expected"), r.Figure("lost"), r.Latency["e2e"].Count)
		}
	}
	if r := read("replay"); r.Figure("reconnects") == 0 {
		t.Error("replay: no reconnection happened")
	}
	if r := read("churn"); r.Figure("connects_per_s") == 0 || r.Figure("churn_failed") != 0 {
		t.Errorf("churn: %v connects/s, %v failed", r.Figure("connects_per_s"), r.Figure("churn_failed"))
	}
	if r := read("ingest-http"); r.Figure("accepted") == 0 || r.Figure("send_failed") != 0 {
		t.Errorf("ingest: %v accepted, %v failed", r.Figure("accepted"), r.Figure("send_failed"))
	}
	b, _ := os.ReadFile(doc)
	s := string(b)
	if !strings.HasPrefix(s, "# Benchmarks\n\nintro\n\n"+docBegin) || !strings.HasSuffix(s, docEnd+"\n\ntail\n") || strings.Contains(s, "\nold\n") ||
		!strings.Contains(s, "| [fanout](") {
		t.Errorf("doc:\n%s", s)
	}
}
