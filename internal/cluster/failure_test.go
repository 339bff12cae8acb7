package cluster_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// All of NATS unreachable: ingest is refused (HTTP 503, SMTP 451) and
// never acknowledged, sockets and reads stay up, /readyz says why; once
// NATS is back the node takes mail again by itself and delivers it.
func TestNATSOutageRefusesIngestAndRecovers(t *testing.T) {
	c := startCluster(t, 2, func(cfg *app.Config) { cfg.SMTP.Addr = "127.0.0.1:0" })
	a, b := c.nodes[0], c.nodes[1]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	w := dial(t, b, acc.Key)
	w.subscribe(nil)
	before := a.Inbound(acc.Key, inbox, "before")
	if got := w.event(); got != before {
		t.Fatalf("got %s, want %s", got, before)
	}
	for i := range c.nats.Size() {
		c.nats.Stop(i)
	}
	testserver.WaitFor(t, 10*time.Second, "ingest refused with 503", func() bool {
		st, _, h := a.Do("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]string{"from": "x@example.com", "subject": "during", "text": "t"})
		return st == http.StatusServiceUnavailable && h.Get("Retry-After") != ""
	})
	err := smtp.SendMail(a.SMTPAddr(), nil, "x@example.com", []string{"agent@mail.test"}, []byte("Subject: during\r\n\r\nbody\r\n"))
	if err == nil || !strings.Contains(err.Error(), "451") {
		t.Fatalf("SMTP during the outage: %v, want 451", err)
	}
	if st, body, _ := a.Do("GET", "/readyz", "", nil); st != http.StatusServiceUnavailable || !bytes.Contains(body, []byte("store_unavailable")) {
		t.Fatalf("/readyz during the outage: %d %s", st, body)
	}
	if st, _, _ := a.Do("GET", "/v1/inboxes", acc.Key, nil); st != http.StatusOK {
		t.Fatalf("reads during the outage: %d", st)
	}
	w.send(map[string]any{"type": "ping"})
	if f := w.read(); f["type"] != "pong" {
		t.Fatalf("the socket during the outage: %v", f)
	}
	for i := range c.nats.Size() {
		if err := c.nats.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	var after string
	testserver.WaitFor(t, 30*time.Second, "ingest back", func() bool {
		st, body, _ := a.Do("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]string{"from": "x@example.com", "subject": "after", "text": "t"})
		if st == http.StatusAccepted {
			after = string(body)
		}
		return st == http.StatusAccepted
	})
	id := w.event()
	if !strings.Contains(after, id) {
		t.Fatalf("after the outage the socket got %s, the inbound answered %s", id, after)
	}
	testserver.WaitFor(t, 10*time.Second, "ready again", func() bool {
		st, _, _ := a.Do("GET", "/readyz", "", nil)
		return st == http.StatusOK
	})
}

// One NATS server of three stopped under load: every acknowledged
// message is stored and delivered, and a refusal tells the truth: a
// request answered "nothing was stored" was not stored. (A write whose
// confirmation was lost with the server is sent again under the same
// Nats-Msg-Id and acknowledged; only one whose retries ran out is
// answered "may have been stored".)
func TestNATSServerLossUnderLoadLosesNothing(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	w := dial(t, b, acc.Key)
	w.subscribe(nil)
	var mu sync.Mutex
	acked := map[string]string{}   // event id -> subject
	refused := map[string]string{} // subject -> the refusal
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := []*testserver.Server{a, b}[g%2]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("load %d.%d", g, i)
				var out struct{ EventID string }
				st, body, _ := n.Do("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]string{"from": "x@example.com", "subject": subject, "text": "t"})
				mu.Lock()
				if st == http.StatusAccepted && jsonID(body, &out) {
					acked[out.EventID] = subject
				} else {
					refused[subject] = fmt.Sprintf("%d %s", st, body)
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testserver.WaitFor(t, 20*time.Second, "load running", func() bool { return count() >= 50 })
	c.nats.Stop(1)
	n0 := count()
	testserver.WaitFor(t, 30*time.Second, "load going on with two servers", func() bool { return count() >= n0+100 })
	close(stop)
	wg.Wait()
	// Read until every acknowledged event has arrived; 15 s without a
	// frame fails the test with the events still missing.
	missing := len(acked)
	seen := map[string]bool{}
	var extra []string
	for missing > 0 {
		_ = w.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		var f struct {
			EventID string `json:"event_id"`
			Message struct {
				Subject string `json:"subject"`
			} `json:"message"`
		}
		if err := w.c.ReadJSON(&f); err != nil {
			for id := range acked {
				if !seen[id] {
					t.Errorf("acknowledged event %s never reached the socket", id)
				}
			}
			t.Fatalf("read: %v (%d acknowledged, %d missing)", err, len(acked), missing)
		}
		if f.EventID == "" || seen[f.EventID] {
			continue
		}
		seen[f.EventID] = true
		if _, ok := acked[f.EventID]; ok {
			missing--
			continue
		}
		// Stored though refused: only a refusal that said so may have it.
		why, ok := refused[f.Message.Subject]
		if !ok {
			t.Errorf("event %s (%q) was neither acknowledged nor refused", f.EventID, f.Message.Subject)
		} else if !strings.Contains(why, "may have been stored") {
			t.Errorf("event %s (%q) was stored, but its request was answered %s", f.EventID, f.Message.Subject, why)
		}
		extra = append(extra, f.EventID)
	}
	for subject, why := range refused {
		t.Logf("refused %q: %.200s", subject, why)
	}
	t.Logf("%d acknowledged and delivered, %d refused, %d of those stored all the same", len(acked), len(refused), len(extra))
}

// A message larger than a NATS message (its raw bytes and attachment go
// to the object store) is stored, delivered and read back whole on
// another node.
func TestLargeMessageAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	blob := make([]byte, 3<<20)
	_, _ = rand.Read(blob)
	var r struct{ MessageID, EventID string }
	a.MustJSON("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]any{"from": "x@example.com", "subject": "big", "text": strings.Repeat("long body ", 200_000),
		"attachments": []map[string]string{{"filename": "blob.bin", "contentType": "application/octet-stream", "contentBase64": base64.StdEncoding.EncodeToString(blob)}}},
		http.StatusAccepted, &r)
	st, got, _ := b.Do("GET", "/v1/attachments/"+r.MessageID+"/blob.bin", acc.Key, nil)
	if st != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("attachment through node B: %d, %d bytes (want %d, equal)", st, len(got), len(blob))
	}
	st, raw, _ := b.Do("GET", "/v1/messages/"+r.MessageID+"/raw", acc.Key, nil)
	if st != http.StatusOK || len(raw) < 4<<20 {
		t.Fatalf("raw through node B: %d, %d bytes", st, len(raw))
	}
	var m struct{ BodyText string }
	b.MustJSON("GET", "/v1/messages/"+r.MessageID, acc.Key, nil, http.StatusOK, &m)
	if len(m.BodyText) < 2_000_000 {
		t.Fatalf("body through node B: %d bytes", len(m.BodyText))
	}
}

// An inbox deleted through one node is gone from every node: its
// messages and events, and its address.
func TestInboxDeletionReachesEveryNode(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	evt := a.Inbound(acc.Key, inbox, "doomed")
	b.MustJSON("GET", "/v1/events/"+evt, acc.Key, nil, http.StatusOK, nil)
	a.MustJSON("DELETE", "/v1/inboxes/"+inbox, acc.Key, nil, http.StatusNoContent, nil)
	testserver.WaitFor(t, 2*time.Second, "gone on node B", func() bool {
		st, _, _ := b.Do("GET", "/v1/events/"+evt, acc.Key, nil)
		st2, _, _ := b.Do("GET", "/v1/inboxes/"+inbox, acc.Key, nil)
		return st == http.StatusNotFound && st2 == http.StatusNotFound
	})
	// The address is free again, on any node.
	b.NewInbox(acc.Key, "agent")
}

// A node started against an unreachable NATS fails at once with a clear
// error.
func TestStartWithoutNATSFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close()
	cfg := testserver.DefaultConfig(t.TempDir())
	cfg.NATS = app.NATSConfig{URL: url, Node: "lonely", Replicas: 1}
	start := time.Now()
	_, err = app.Start(cfg)
	if err == nil || !strings.Contains(err.Error(), "cannot connect to NATS") {
		t.Fatalf("start against no NATS: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("failing took %s", d)
	}
}

// A webhook attempt that runs longer than the lease's ackWait is not taken
// over by another node: the holder keeps its lease alive while the attempt
// runs, so the endpoint gets one request, not one per node.
func TestSlowAttemptKeepsItsLease(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select { // a slow endpoint: answers after the lease's ackWait
		case <-time.After(12 * time.Second):
		case <-release:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	defer close(release)
	c := startCluster(t, 3, func(cfg *app.Config) { cfg.Delivery.Webhook.Timeout = 20 * time.Second })
	a := c.nodes[0]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	a.MustJSON("PUT", "/v1/webhook", acc.Key, map[string]string{"url": recv.URL}, http.StatusOK, nil)
	evt := c.nodes[1].Inbound(acc.Key, inbox, "slow hook")
	testserver.WaitFor(t, 30*time.Second, "delivered", func() bool { return a.EventStatus(acc.Key, evt) == "delivered" })
	if n := hits.Load(); n != 1 {
		t.Fatalf("the webhook got %d requests for one attempt, want 1", n)
	}
	v := eventOf(t, c.nodes[2], acc.Key, evt)
	if len(v.Attempts) != 1 || !v.Attempts[0].OK {
		t.Fatalf("attempts %+v", v.Attempts)
	}
}

// proxy forwards TCP connections to target until cut; restore listens
// again on the same address.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut while dialling
				p.mu.Unlock()
				c.Close()
				u.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
}

// cut closes the listener and every connection through it.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() { p.listen(p.addr) }

// A node cut off from NATS while the rest of the cluster runs: its
// ingest refuses (503), its sockets stay up; the owner of an event's
// attempt gets no answer from it and falls back to the webhook; once the
// node is back it takes mail again and its sockets get events again.
func TestNodeCutFromNATS(t *testing.T) {
	var hooks atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hooks.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	c := startCluster(t, 1)
	a := c.nodes[0]
	var proxies []*proxy
	var urls []string
	for i := range c.nats.Size() {
		p := newProxy(t, strings.TrimPrefix(c.nats.ServerURL(i), "nats://"))
		proxies = append(proxies, p)
		urls = append(urls, "nats://"+p.addr)
	}
	b := testserver.Start(t, func(cfg *app.Config) {
		cfg.NATS = app.NATSConfig{URL: strings.Join(urls, ","), Node: "cut-node", Replicas: c.nats.Size()}
	})
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	a.MustJSON("PUT", "/v1/webhook", acc.Key, map[string]string{"url": recv.URL}, http.StatusOK, nil)
	testserver.WaitFor(t, 10*time.Second, "b sees the account", func() bool {
		st, _, _ := b.Do("GET", "/v1/inboxes/"+inbox, acc.Key, nil)
		return st == http.StatusOK
	})
	w := dial(t, b, acc.Key)
	w.subscribe(nil)
	first := a.Inbound(acc.Key, inbox, "before the cut")
	if got := w.event(); got != first {
		t.Fatalf("got %s, want %s", got, first)
	}

	for _, p := range proxies {
		p.cut()
	}
	testserver.WaitFor(t, 20*time.Second, "b not ready", func() bool {
		st, _, _ := b.Do("GET", "/readyz", "", nil)
		return st == http.StatusServiceUnavailable
	})
	if st, body, _ := b.Do("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]string{"from": "x@example.com", "subject": "cut", "text": "t"}); st != http.StatusServiceUnavailable {
		t.Fatalf("ingest on a node cut from NATS: %d %s, want 503", st, body)
	}
	during := a.Inbound(acc.Key, inbox, "during the cut")
	testserver.WaitFor(t, 30*time.Second, "delivered by webhook", func() bool {
		v := eventOf(t, a, acc.Key, during)
		return v.Status == "delivered" && v.DeliveredVia != nil && *v.DeliveredVia == "webhook"
	})

	for _, p := range proxies {
		p.restore()
	}
	testserver.WaitFor(t, 30*time.Second, "b ready again", func() bool {
		st, _, _ := b.Do("GET", "/readyz", "", nil)
		return st == http.StatusOK
	})
	after := b.Inbound(acc.Key, inbox, "after the cut")
	for {
		if id := w.event(); id == after {
			break // the socket on b survived the cut and gets events again
		}
	}
	testserver.WaitFor(t, 20*time.Second, "delivered", func() bool { return a.EventStatus(acc.Key, after) == "delivered" })
}

// Two leases of one event out on one node at once (the first attempt,
// still running, and the due lease of a redeliver) are each kept alive:
// neither expires and comes back as a second copy of its attempt.
func TestTwoLeasesOfOneEventOnOneNode(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select { // both attempts outlast the lease's ackWait
		case <-time.After(32 * time.Second):
		case <-release:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	defer close(release)
	c := startCluster(t, 1, func(cfg *app.Config) { cfg.Delivery.Webhook.Timeout = 40 * time.Second })
	a := c.nodes[0]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	a.MustJSON("PUT", "/v1/webhook", acc.Key, map[string]string{"url": recv.URL}, http.StatusOK, nil)
	evt := a.Inbound(acc.Key, inbox, "two leases")
	// Bounds, not timings: a loaded -race suite took over 15 s once.
	testserver.WaitFor(t, 30*time.Second, "the first webhook request", func() bool { return hits.Load() == 1 })
	a.MustJSON("POST", "/v1/events/"+evt+"/redeliver", acc.Key, nil, http.StatusAccepted, nil)
	testserver.WaitFor(t, 30*time.Second, "the redelivered attempt's request", func() bool { return hits.Load() == 2 })
	// Two requests are right; a third while both still run is an attempt
	// made again after its lease expired.
	testserver.Never(t, 25*time.Second, "a third webhook request", func() bool { return hits.Load() > 2 })
}
