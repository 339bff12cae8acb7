package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// clusterNode is one mailwire process of a cluster test.
type clusterNode struct {
	cmd  *exec.Cmd
	base string
	out  *lines
}

// startClusterNode runs the binary as a cluster node on natsURL (three
// replicas) and waits until it serves HTTP.
func startClusterNode(t *testing.T, bin, natsURL, name string, extra ...string) *clusterNode {
	t.Helper()
	return startServe(t, bin, name, append([]string{"--nats-url", natsURL, "--nats-replicas", "3", "--node-name", name,
		"--data-dir", t.TempDir()}, extra...)...)
}

// startServe runs `mailwire serve` on a free HTTP port, without SMTP, with
// admin token "tok", plus args, and waits until it serves HTTP; it is
// stopped (SIGTERM) when the test ends unless it was killed before.
func startServe(t *testing.T, bin, name string, args ...string) *clusterNode {
	t.Helper()
	args = append([]string{"serve", "--http-addr", "127.0.0.1:0", "--smtp-addr", "",
		"--admin-token", "tok", "--webhook-allow-private", "--log-level", "info"}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{cmd: cmd, out: &lines{}}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	})
	addr := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		re := regexp.MustCompile(`msg="serving HTTP and WebSockets".* addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			n.out.mu.Lock()
			n.out.all = append(n.out.all, line)
			n.out.mu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		n.base = "http://" + a
	case <-exited:
		t.Fatalf("node %s exited:\n%s", name, n.out)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("node %s did not start:\n%s", name, n.out)
	}
	return n
}

// kill ends the node with SIGKILL.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = n.cmd.Wait()
}

// nodeCall makes one JSON API call; 0 when the node did not answer.
func nodeCall(base, method, path, key string, body, out any) int {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestClusterKill9UnderLoadLosesNothing runs three real mailwire processes
// on a three-server NATS cluster, loads all of them with inbound mail while
// the webhook endpoint fails, kills one node with SIGKILL mid-load, and
// checks that every message any node acknowledged (202) is readable on the
// survivors and, once the endpoint recovers, delivered: the killed node's
// leases are taken over by the others (docs/CLUSTER.md "Failure
// behaviour"). A node wiped and restarted empty then serves the same
// events.
func TestClusterKill9UnderLoadLosesNothing(t *testing.T) {
	bin := mailwireBinary(t)
	nc := testserver.NATS(t, 3)
	// Attempts keep failing for a while: most events are pending, some are
	// leased by the node that dies.
	sched := "0s" + strings.Repeat(",400ms", 30) + strings.Repeat(",2s", 60) // ~130 s of attempts: longer than any phase
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		nodes[i] = startClusterNode(t, bin, nc.URL(), fmt.Sprintf("k%d", i), "--retry-schedule", sched)
	}

	t0 := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(t0).Seconds(), what) }
	var acc struct{ ID, APIKey string }
	if code := nodeCall(nodes[0].base, "POST", "/admin/v1/accounts", "tok", map[string]string{"name": "k9"}, &acc); code != 201 {
		t.Fatalf("create account: %d", code)
	}
	var inbox struct{ ID string }
	if code := nodeCall(nodes[0].base, "POST", "/v1/inboxes", acc.APIKey, map[string]string{"mailboxName": "agent"}, &inbox); code != 201 {
		t.Fatalf("create inbox: %d", code)
	}

	// The endpoint fails until open: attempts are made and rescheduled.
	var open atomic.Bool
	var gotMu sync.Mutex
	got := map[string]int{}
	rc := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !open.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		gotMu.Lock()
		got[r.Header.Get("X-Event-Id")]++
		gotMu.Unlock()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rc.Serve(ln) }()
	t.Cleanup(func() { _ = rc.Close() })
	for i, n := range nodes {
		testserver.WaitFor(t, 10*time.Second, fmt.Sprintf("node %d sees the inbox", i), func() bool {
			return nodeCall(n.base, "GET", "/v1/inboxes/"+inbox.ID, acc.APIKey, nil, nil) == 200
		})
	}
	if code := nodeCall(nodes[1].base, "PUT", "/v1/webhook", acc.APIKey, map[string]string{"url": "http://" + ln.Addr().String() + "/hook"}, nil); code != 200 {
		t.Fatalf("set webhook: %d", code)
	}

	// Load every node; only 202s count.
	var (
		mu     sync.Mutex
		acked  []string
		stop   atomic.Bool
		wg     sync.WaitGroup
		killed atomic.Bool
	)
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 15 * time.Second}
			for i := 0; !stop.Load(); i++ {
				n := nodes[w%3]
				if w%3 == 0 && killed.Load() {
					n = nodes[1+i%2] // the load balancer moves on
				}
				b, _ := json.Marshal(map[string]string{"from": "load@example.com", "subject": fmt.Sprintf("w%d-%d", w, i), "text": "x"})
				req, _ := http.NewRequest("POST", n.base+"/v1/inboxes/"+inbox.ID+"/inbound", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+acc.APIKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue // the node is gone: unacknowledged
				}
				var out struct{ EventID string }
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted && out.EventID != "" {
					mu.Lock()
					acked = append(acked, out.EventID)
					mu.Unlock()
				}
			}
		}(w)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testserver.WaitFor(t, 60*time.Second, "load before the kill", func() bool { return count() >= 300 })
	phase("300 acknowledged")
	nodes[0].kill(t)
	killed.Store(true)
	atKill := count()
	testserver.WaitFor(t, 60*time.Second, "load after the kill", func() bool { return count() >= atKill+150 })
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	ids := append([]string(nil), acked...)
	mu.Unlock()
	t.Logf("%d messages acknowledged, %d before SIGKILL of node 0", len(ids), atKill)

	phase("load stopped")
	// Every acknowledged event is listed on both survivors.
	// (A node lists what its index has applied: it may lag the log.)
	for _, n := range nodes[1:] {
		var missing []string
		testserver.WaitFor(t, 20*time.Second, "every acknowledged event listed on "+n.base, func() bool {
			st := listStatuses(t, n.base, acc.APIKey)
			missing = missing[:0]
			for _, id := range ids {
				if st[id] == "" {
					missing = append(missing, id)
				}
			}
			return len(missing) == 0
		})
	}

	// The endpoint recovers: every event is delivered, those whose
	// attempt the dead node held included.
	open.Store(true)
	phase("endpoint open")
	missing := func() int {
		gotMu.Lock()
		defer gotMu.Unlock()
		m := 0
		for _, id := range ids {
			if got[id] == 0 {
				m++
			}
		}
		return m
	}
	testserver.WaitFor(t, 90*time.Second, "every acknowledged event delivered", func() bool { return missing() == 0 })
	phase("all delivered")
	testserver.WaitFor(t, 30*time.Second, "every event recorded delivered", func() bool {
		st := listStatuses(t, nodes[2].base, acc.APIKey)
		for _, id := range ids {
			if st[id] != "delivered" {
				return false
			}
		}
		return true
	})
	gotMu.Lock()
	dups := 0
	for _, id := range ids {
		dups += got[id] - 1
	}
	gotMu.Unlock()
	t.Logf("all %d delivered; %d duplicate webhook deliveries (at-least-once)", len(ids), dups)

	phase("all recorded delivered")
	// Node 0 comes back with nothing of its own: it serves the same events.
	n0 := startClusterNode(t, bin, nc.URL(), "k0", "--retry-schedule", sched)
	phase("node 0 restarted empty")
	for _, id := range []string{ids[0], ids[len(ids)/2], ids[len(ids)-1]} {
		var ev struct{ Status string }
		if code := nodeCall(n0.base, "GET", "/v1/events/"+id, acc.APIKey, nil, &ev); code != 200 || ev.Status != "delivered" {
			t.Fatalf("restarted empty node: event %s: status %d, %q", id, code, ev.Status)
		}
	}
}

// listStatuses pages through the account's events on a node: id → status.
func listStatuses(t *testing.T, base, key string) map[string]string {
	t.Helper()
	st := map[string]string{}
	for off := 0; ; off += 100 {
		var page struct {
			Data  []struct{ ID, Status string }
			Total int
		}
		if code := nodeCall(base, "GET", fmt.Sprintf("/v1/events?limit=100&offset=%d", off), key, nil, &page); code != 200 {
			t.Fatalf("list events on %s: %d", base, code)
		}
		for _, e := range page.Data {
			st[e.ID] = e.Status
		}
		if len(page.Data) < 100 {
			return st
		}
	}
}
