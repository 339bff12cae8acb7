package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/testserver"
)

// node is the real binary serving for a test, its logs collected.
type node struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs lines
	done chan struct{}
	base string // http://host:port
	smtp string // host:port
}

// freePort returns a loopback address with a free port (so that a
// restarted node can bind the same one).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runNode runs `mailwire serve` with args (prefix, e.g. prlimit, runs it)
// and waits until it listens.
func runNode(t *testing.T, prefix []string, args ...string) *node {
	t.Helper()
	bin := mailwireBinary(t)
	n := &node{t: t, done: make(chan struct{})}
	full := append(append(prefix, bin, "serve"), args...)
	n.cmd = exec.Command(full[0], full[1:]...)
	n.cmd.Env = cleanEnv()
	stderr, _ := n.cmd.StderrPipe()
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go n.logs.read(stderr, n.done)
	t.Cleanup(n.kill)
	ready := regexp.MustCompile(`msg="mailwire ready".* http=(\S+) smtp=(\S*)`)
	testserver.WaitFor(t, 30*time.Second, "the node to be ready", func() bool {
		if m := n.logs.find(ready); m != nil {
			n.base, n.smtp = "http://"+m[1], strings.Trim(m[2], `"`)
			return true
		}
		return false
	})
	return n
}

func (n *node) kill() {
	if n.cmd.ProcessState == nil {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		_ = n.cmd.Wait()
	}
}

// do sends a request and returns status, body and headers (status 0 when
// no answer came).
func (n *node) do(method, path, key string, body []byte, ct string) (int, []byte, http.Header) {
	req, _ := http.NewRequest(method, n.base+path, bytes.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, []byte(err.Error()), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (n *node) mustJSON(method, path, key string, body any, want int, out any) {
	n.t.Helper()
	b, _ := json.Marshal(body)
	code, got, _ := n.do(method, path, key, b, "application/json")
	if code != want {
		n.t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, want)
	}
	if out != nil {
		_ = json.Unmarshal(got, out)
	}
}

// setup makes an account with an inbox "agent"; it returns the key and the
// inbox id.
func (n *node) setup(token string) (key, inbox string) {
	n.t.Helper()
	var acc struct{ APIKey string }
	n.mustJSON("POST", "/admin/v1/accounts", token, map[string]string{"name": "x"}, 201, &acc)
	var in struct{ ID string }
	n.mustJSON("POST", "/v1/inboxes", acc.APIKey, map[string]string{"mailboxName": "agent"}, 201, &in)
	return acc.APIKey, in.ID
}

func (n *node) inbound(key, inbox, text string) (int, []byte, http.Header) {
	b, _ := json.Marshal(map[string]string{"from": "a@example.com", "subject": "s", "text": text})
	return n.do("POST", "/v1/inboxes/"+inbox+"/inbound", key, b, "application/json")
}

// smtpMailFrom opens an SMTP session and returns the reply to MAIL FROM.
func smtpMailFrom(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line := func() string {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("smtp: %v", err)
			}
			if len(l) < 4 || l[3] != '-' {
				return strings.TrimSpace(l)
			}
		}
	}
	line() // greeting
	fmt.Fprintf(c, "EHLO test\r\n")
	line()
	fmt.Fprintf(c, "MAIL FROM:<a@example.com>\r\n")
	return line()
}

// mountTmpfs mounts a tmpfs of size bytes at a temporary directory, or
// skips the test where mounting is not possible (not root, no tmpfs).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the disk budget is covered by internal/limits' and store's tests", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file that leaves about leave bytes free under dir.
func fill(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for n := free - leave; n > 0; n -= int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), n)]); err != nil {
			break // full
		}
	}
	return path
}

// RELIABILITY.md invariant 10, disk: below --min-free-disk ingest is
// refused (507 / 452 4.3.1) while reads, replay and WebSockets go on and
// /readyz says why; ingest resumes by itself when space comes back. A
// restart on a full disk serves read-only instead of spinning, and opens
// the store for writing once space is back. (A full disk used to exit 74,
// and a restart on it never listened, burning a core and logging ~85
// lines a second.)
func TestDiskBudget(t *testing.T) {
	disk := mountTmpfs(t, 96<<20)
	addr := freePort(t)
	data := filepath.Join(disk, "data")
	args := []string{"--data-dir", data, "--http-addr", addr, "--smtp-addr", "127.0.0.1:0", "--admin-token", "tok",
		"--min-free-disk", "24MiB", "--log-level", "info"}
	n := runNode(t, nil, args...)
	key, inbox := n.setup("tok")
	code, body, _ := n.inbound(key, inbox, "before")
	if code != 202 {
		t.Fatalf("inbound: %d %s", code, body)
	}
	var first struct{ EventID, MessageID string }
	_ = json.Unmarshal(body, &first)
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(n.base, "http", "ws", 1)+"/v1/ws", http.Header{"Authorization": {"Bearer " + key}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	// Fill the disk to below the threshold.
	filler := fill(t, disk, 16<<20)
	testserver.WaitFor(t, 10*time.Second, "ingest refused with 507", func() bool {
		code, _, _ := n.inbound(key, inbox, "refused")
		return code == http.StatusInsufficientStorage
	})
	code, body, hdr := n.inbound(key, inbox, "refused")
	if code != 507 || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "insufficient_storage") {
		t.Fatalf("inbound on a low disk: %d %s", code, body)
	}
	if got := smtpMailFrom(t, n.smtp); !strings.HasPrefix(got, "452 4.3.1") {
		t.Fatalf("MAIL FROM on a low disk: %q", got)
	}
	code, body, _ = n.do("GET", "/readyz", "", nil, "")
	if code != 503 || !strings.Contains(string(body), "min-free-disk") {
		t.Fatalf("readyz on a low disk: %d %s", code, body)
	}
	// Everything else works: reads, the WebSocket, replay.
	if code, body, _ := n.do("GET", "/v1/messages/"+first.MessageID, key, nil, ""); code != 200 {
		t.Fatalf("read on a low disk: %d %s", code, body)
	}
	if err := ws.WriteJSON(map[string]any{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var pong map[string]any
	if err := ws.ReadJSON(&pong); err != nil || pong["type"] != "pong" {
		t.Fatalf("the WebSocket on a low disk: %v %v", pong, err)
	}

	// Space comes back: ingest resumes by itself.
	_ = os.Remove(filler)
	testserver.WaitFor(t, 10*time.Second, "ingest to resume", func() bool {
		code, _, _ := n.inbound(key, inbox, "after")
		return code == 202
	})
	if code, _, _ := n.do("GET", "/readyz", "", nil, ""); code != 200 {
		t.Fatalf("readyz after: %d", code)
	}

	// A restart on a full disk: it serves, read-only, without spinning.
	n.kill()
	filler = fill(t, disk, 0)
	n = runNode(t, nil, args...)
	start := time.Now()
	testserver.WaitFor(t, 10*time.Second, "readyz refusing ingest", func() bool {
		code, body, _ := n.do("GET", "/readyz", "", nil, "")
		return code == 503 && strings.Contains(string(body), "refusing_ingest")
	})
	if code, body, _ := n.do("GET", "/v1/messages/"+first.MessageID, key, nil, ""); code != 200 {
		t.Fatalf("read on a full disk: %d %s", code, body)
	}
	if code, body, _ := n.inbound(key, inbox, "full"); code != 507 {
		t.Fatalf("inbound on a full disk: %d %s", code, body)
	}
	time.Sleep(2 * time.Second) // a window to count log lines in (what is checked is that it stays quiet)
	if lines := len(strings.Split(n.logs.String(), "\n")); lines > 40 {
		t.Fatalf("%d log lines in %s on a full disk:\n%s", lines, time.Since(start), n.logs.String())
	}
	_ = os.Remove(filler)
	testserver.WaitFor(t, 20*time.Second, "the node to reopen for writing and take mail", func() bool {
		code, _, _ := n.inbound(key, inbox, "back")
		return code == 202
	})
}

// RELIABILITY.md invariant 10, descriptors: under a 1,024-descriptor
// limit, 1,100 idle connections do not lock clients out or reach the
// store: those past the per-address cap are refused at accept (and
// counted), an authenticated client from another address keeps storing
// mail (Pebble rotating its WAL meanwhile), and nothing floods the log.
// (The same load used to lock every client out for 60 s and make Pebble's
// WAL rotation panic.)
func TestDescriptorBudget(t *testing.T) {
	prlimit := testserver.Tool(t, "/usr/bin/prlimit", "util-linux")
	n := runNode(t, []string{prlimit, "--nofile=1024:1024"}, "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--http-addr", "127.0.0.1:0", "--smtp-addr", "", "--admin-token", "tok", "--log-level", "info")
	key, inbox := n.setup("tok")
	host := strings.TrimPrefix(n.base, "http://")

	var idle []net.Conn
	var mu sync.Mutex
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 1100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
			if c, err := d.Dial("tcp", host); err == nil {
				mu.Lock()
				idle = append(idle, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// The client keeps working while they are held, and Pebble writes.
	big := strings.Repeat("x", 2<<20)
	for i := 0; i < 40; i++ {
		if code, body, _ := n.inbound(key, inbox, big); code != 202 {
			t.Fatalf("inbound %d while 1,100 idle connections are open: %d %.200s", i, code, body)
		}
	}
	code, m, _ := n.do("GET", "/metrics", "", nil, "")
	if code != 200 || !regexp.MustCompile(`mailwire_connections_refused_total\{reason="per_ip"\} [1-9]`).Match(m) {
		t.Fatalf("metrics: %d, no per-address refusals:\n%s", code, m)
	}
	if n.cmd.ProcessState != nil {
		t.Fatalf("the node exited: %s", n.logs.String())
	}
	if lines := len(strings.Split(n.logs.String(), "\n")); lines > 200 {
		t.Fatalf("%d log lines", lines)
	}
}

// TestDescriptorBudgetEvictsIdleConnections: idle sockets from several
// addresses (each under the per-address cap) fill the descriptor budget;
// an authenticated client from another address, on a new connection for
// every request, is still served, because the oldest connections that
// never sent a request are closed to make room for it (before, it was
// reset at accept until the head deadline dropped them) — and, when the
// idle sockets each sent one cheap request first and then sit on their
// kept-alive connection, the longest idle of those (before, they held
// every slot until the 60 s idle timeout).
func TestDescriptorBudgetEvictsIdleConnections(t *testing.T) {
	t.Run("never sent a request", func(t *testing.T) { testDescriptorBudgetEvicts(t, false) })
	t.Run("kept alive after one request", func(t *testing.T) { testDescriptorBudgetEvicts(t, true) })
}

func testDescriptorBudgetEvicts(t *testing.T, oneRequest bool) {
	prlimit := testserver.Tool(t, "/usr/bin/prlimit", "util-linux")
	n := runNode(t, []string{prlimit, "--nofile=1024:1024"}, "--data-dir", filepath.Join(t.TempDir(), "data"),
		"--http-addr", "127.0.0.1:0", "--smtp-addr", "", "--admin-token", "tok", "--log-level", "info")
	key, inbox := n.setup("tok")
	host := strings.TrimPrefix(n.base, "http://")
	gauge := func(m []byte, name string) int {
		v := regexp.MustCompile(`(?m)^` + name + ` (\d+)`).FindSubmatch(m)
		if v == nil {
			return -1
		}
		i, _ := strconv.Atoi(string(v[1]))
		return i
	}
	code, m, _ := n.do("GET", "/metrics", "", nil, "")
	budget := gauge(m, "mailwire_fd_client_budget")
	if code != 200 || budget <= 0 {
		t.Fatalf("metrics: %d, budget %d", code, budget)
	}

	// With kept-alive sockets to evict, connections that are not between
	// requests must survive the eviction: a subscribed WebSocket and a
	// held pull request, both opened before the flood.
	var ws *websocket.Conn
	var pull, slow net.Conn
	var slowR *bufio.Reader
	var slowResp *http.Response
	if oneRequest {
		var err error
		ws, _, err = websocket.DefaultDialer.Dial(strings.Replace(n.base, "http", "ws", 1)+"/v1/ws", http.Header{"Authorization": {"Bearer " + key}})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteJSON(map[string]any{"type": "subscribe"}); err != nil {
			t.Fatal(err)
		}
		var f map[string]any
		if err := ws.ReadJSON(&f); err != nil || f["type"] != "subscribed" {
			t.Fatalf("subscribe: %v %v", f, err)
		}
		// A slow reader whose large answer is still queued in the server
		// when the flood comes: between requests as far as HTTP goes, but
		// evicting it would cut the answer (nbio's Close drops the queue).
		raw := "From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 76)+"\r\n", 12<<20/78)
		code, b, _ := n.do("POST", "/v1/inboxes/"+inbox+"/inbound", key, []byte(raw), "message/rfc822")
		var big struct{ MessageID string }
		if err := json.Unmarshal(b, &big); code != 202 || err != nil {
			t.Fatalf("large inbound: %d %.200s", code, b)
		}
		sd := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		if slow, err = sd.Dial("tcp", host); err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		_, _ = io.WriteString(slow, "GET /v1/messages/"+big.MessageID+"/raw HTTP/1.1\r\nHost: mailwire\r\nAuthorization: Bearer "+key+"\r\n\r\n")
		_ = slow.SetReadDeadline(time.Now().Add(15 * time.Second))
		slowR = bufio.NewReader(slow)
		if slowResp, err = http.ReadResponse(slowR, nil); err != nil || slowResp.StatusCode != 200 {
			t.Fatalf("the slow reader's answer: %v %v", slowResp, err)
		}
		// It reads no further until the flood is over.
		if pull, err = net.Dial("tcp", host); err != nil {
			t.Fatal(err)
		}
		defer pull.Close()
		// No cursor: events stored from now on (API.md).
		_, _ = io.WriteString(pull, "GET /v1/events/stream?wait=60s HTTP/1.1\r\nHost: mailwire\r\nAuthorization: Bearer "+key+"\r\n\r\n")
		testserver.WaitFor(t, 10*time.Second, "the pull held", func() bool {
			_, m, _ := n.do("GET", "/metrics", "", nil, "")
			return gauge(m, "mailwire_pull_held") == 1
		})
	}

	var idle []net.Conn
	var mu sync.Mutex
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for a := 2; a <= 6; a++ {
		for i := 0; i < 220; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(a))}, Timeout: 5 * time.Second}
				if c, err := d.Dial("tcp", host); err == nil {
					if oneRequest && !healthzKeptAlive(c) {
						c.Close() // refused at accept (reset): the budget is full
						return
					}
					mu.Lock()
					idle = append(idle, c)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	// The budget is full of idle sockets: the server counts as many as
	// it may hold (or, without eviction, refuses the request asking).
	fresh := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := fresh.Get(n.base + "/metrics")
		if err != nil {
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if gauge(b, "mailwire_client_connections") >= budget {
			break
		}
	}

	text := strings.Repeat("x", 64<<10)
	for i := 0; i < 40; i++ {
		b, _ := json.Marshal(map[string]string{"from": "a@example.com", "subject": "s", "text": text})
		req, _ := http.NewRequest("POST", n.base+"/v1/inboxes/"+inbox+"/inbound", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("inbound %d on a new connection while %d idle sockets fill the budget of %d: %v", i, len(idle), budget, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("inbound %d: %d %.200s", i, resp.StatusCode, body)
		}
	}
	reason := "unproven"
	if oneRequest {
		reason = "idle"
		// The WebSocket got every event; the held pull was answered.
		for i := 0; i < 40; i++ {
			_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
			var f map[string]any
			if err := ws.ReadJSON(&f); err != nil {
				t.Fatalf("the subscribed WebSocket after %d events: %v", i, err)
			}
			if f["type"] == "ping" {
				i--
			}
		}
		_ = pull.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(pull), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the held pull: %v %v", resp, err)
		}
		var page struct{ Data []json.RawMessage }
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || len(page.Data) == 0 {
			t.Fatalf("the held pull's answer: %d events, %v", len(page.Data), err)
		}
		_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
		if got, err := io.Copy(io.Discard, slowResp.Body); err != nil || got != slowResp.ContentLength {
			t.Fatalf("the slow reader's answer: %d of %d bytes: %v", got, slowResp.ContentLength, err)
		}
	}
	code, m, _ = n.do("GET", "/metrics", "", nil, "")
	if code != 200 || !regexp.MustCompile(`mailwire_connections_evicted_total\{reason="`+reason+`"\} [1-9]`).Match(m) {
		t.Fatalf("metrics: %d, no evictions of %s connections:\n%s", code, reason, m)
	}
	if n.cmd.ProcessState != nil {
		t.Fatalf("the node exited: %s", n.logs.String())
	}
	if lines := len(strings.Split(n.logs.String(), "\n")); lines > 200 {
		t.Fatalf("%d log lines", lines)
	}
}

// healthzKeptAlive sends one GET /healthz on c and reads its answer,
// leaving the connection open (HTTP/1.1 keep-alive); false when the
// server closed or reset it instead.
func healthzKeptAlive(c net.Conn) bool {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: mailwire\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && !resp.Close
}
