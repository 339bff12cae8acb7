package engine_test

import (
	"bufio"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// guideClient runs OpenMail's guide client (Python websockets at its
// defaults, testdata/guide_client.py) for d and collects its lines.
type guideClient struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func runGuideClient(t *testing.T, s *testserver.Server, key string, d time.Duration) *guideClient {
	t.Helper()
	py := testserver.Python(t)
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	cmd := exec.CommandContext(ctx, py, "testdata/guide_client.py", s.WSURL, key, strconv.FormatFloat(d.Seconds(), 'f', 3, 64))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &guideClient{done: make(chan struct{})}
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			g.mu.Lock()
			g.lines = append(g.lines, sc.Text())
			g.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel() // the test has what it needs: stop the client
		<-g.done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("guide client lines: %q\nstderr: %s", g.all(), stderr.String())
		}
	})
	return g
}

func (g *guideClient) all() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.lines...)
}

func (g *guideClient) count(prefix string) int {
	n := 0
	for _, l := range g.all() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func (g *guideClient) has(line string) bool {
	for _, l := range g.all() {
		if strings.HasPrefix(l, line) {
			return true
		}
	}
	return false
}

// PROTOCOL.md §5: one mail larger than the client's 1 MiB frame limit
// used to stop the account's stream (the client disconnected on it,
// resumed before it, got it again: hundreds of reconnects a second). Now
// the frame is capped, the event says truncated, later events arrive, and
// the whole message stays in the REST API.
func TestGuideClientSurvivesALargeMail(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	g := runGuideClient(t, s, acc.Key, 30*time.Second)
	testserver.WaitFor(t, 10*time.Second, "the guide client to subscribe", func() bool { return g.has("subscribed") })

	body := strings.Repeat("A long line of a long mail, with é and 日本 in it. ", 60_000) // ~3 MiB
	var big struct{ MessageID, EventID string }
	s.MustJSON("POST", "/v1/inboxes/"+in+"/inbound", acc.Key,
		map[string]string{"from": "a@example.com", "subject": "huge", "text": body}, 202, &big)
	small := s.Inbound(acc.Key, in, "after the huge one")

	testserver.WaitFor(t, 10*time.Second, "both events at the guide client", func() bool {
		return g.has("event "+big.EventID) && g.has("event "+small)
	})
	for _, l := range g.all() {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "event" && f[1] == big.EventID {
			if n, _ := strconv.Atoi(f[2]); n > 256<<10 || f[3] != "truncated" {
				t.Fatalf("large event frame: %q (want ≤ 256 KiB and truncated)", l)
			}
		}
	}
	if n := g.count("connected"); n != 1 {
		t.Fatalf("the client connected %d times", n)
	}
	var m struct{ BodyText string }
	s.MustJSON("GET", "/v1/messages/"+big.MessageID, acc.Key, nil, 200, &m)
	if m.BodyText != body {
		t.Fatalf("the REST API has %d bytes of the body, want %d", len(m.BodyText), len(body))
	}
}

// PROTOCOL.md §1: a bad key used to make the guide's loop reconnect ~770
// times a second (a completed upgrade resets its backoff). Now, after a
// few failures from one address, upgrades get 429 + Retry-After and the
// library backs off: at most 20 attempts in 5 s.
func TestGuideClientWithABadKeyBacksOff(t *testing.T) {
	s := testserver.Start(t)
	g := runGuideClient(t, s, "om_"+strings.Repeat("0", 48), 5*time.Second)
	<-g.done
	attempts := upgradeRequests(t, s)
	t.Logf("%d upgrade attempts in 5 s", attempts)
	if attempts > 20 || attempts < 2 {
		t.Fatalf("%d upgrade attempts in 5 s, want between 2 and 20", attempts)
	}
	if g.count("closed 4001") == 0 {
		t.Fatalf("the client never saw 4001: %q", g.all())
	}
	// A good key from the same address is not throttled.
	acc := s.NewAccount("a")
	c := dialWS(t, s, acc.Key)
	c.subscribe(nil, nil)
}

// upgradeRequests counts GET /v1/ws requests from the server's metrics.
func upgradeRequests(t *testing.T, s *testserver.Server) int {
	t.Helper()
	_, body, _ := s.Do("GET", "/metrics", "", nil)
	n := 0
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, `mailwire_http_requests_total{method="GET",route="/v1/ws",`) {
			f := strings.Fields(l)
			v, _ := strconv.Atoi(f[len(f)-1])
			n += v
		}
	}
	return n
}

// Python's urllib at its defaults (it sends Connection: close on every
// request) reads a large raw message whole: the answer is not cut when
// the server closes after it (it got 3.9–5 MB of 21.5 MB before).
func TestUrllibReadsALargeRawMessageWhole(t *testing.T) {
	t.Parallel()
	py := testserver.Python(t)
	s := startAPI(t)
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "urllib"})
	raw := []byte("From: a@example.com\r\nTo: urllib@mail.test\r\nSubject: big\r\n\r\n" + strings.Repeat(strings.Repeat("u", 76)+"\r\n", 16<<20/78))
	r, _ := inboundRaw(t, s, a.Key, in.ID, raw)
	const script = `import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
print(len(urllib.request.urlopen(req, timeout=30).read()))`
	out, err := exec.Command(py, "-c", script, s.URL+"/v1/messages/"+r.MessageID+"/raw", a.Key).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != strconv.Itoa(len(raw)) {
		t.Fatalf("urllib read %s (%v), want %d bytes", got, err, len(raw))
	}
}
