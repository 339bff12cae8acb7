package engine_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// syncBuffer is a log sink the server's goroutines may write to at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRequestIDAndAccessLog(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	s := startAPI(t, func(c *app.Config) {
		c.AccessLog = true
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	a := s.NewAccount("a")

	// A sane id from the client is kept, on success and on errors.
	for _, path := range []string{"/v1/inboxes", "/v1/inboxes/inb_nope"} {
		st, _, h := call(s, "GET", path, a.Key, nil, "X-Request-Id", "proxy-7f3a:1")
		if got := h.Get("X-Request-Id"); got != "proxy-7f3a:1" {
			t.Errorf("GET %s (%d): X-Request-Id %q, want the client's", path, st, got)
		}
	}
	// None, or one unfit for a log line, gets a new one.
	seen := map[string]bool{}
	for _, hdr := range [][]string{nil, {"X-Request-Id", "has space"}, {"X-Request-Id", strings.Repeat("x", 129)}, {"X-Request-Id", "a\"b"}} {
		_, _, h := call(s, "GET", "/healthz", "", nil, hdr...)
		got := h.Get("X-Request-Id")
		if !strings.HasPrefix(got, "req_") || seen[got] {
			t.Errorf("request with %q: X-Request-Id %q, want a new req_ id", hdr, got)
		}
		seen[got] = true
	}
	// 404 of an unknown route too.
	if _, _, h := call(s, "GET", "/nope", "", nil); h.Get("X-Request-Id") == "" {
		t.Error("a 404 has no X-Request-Id")
	}

	testserver.WaitFor(t, 5*time.Second, "the access log line", func() bool {
		return strings.Contains(logs.String(), "request_id=proxy-7f3a:1")
	})
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "request_id=proxy-7f3a:1") && strings.Contains(l, "inb_nope") {
			line = l
		}
	}
	for _, want := range []string{"component=access", `msg="http request"`, "method=GET", "path=/v1/inboxes/inb_nope",
		"route=/v1/inboxes/{id}", "status=400", "duration_ms=", "remote=127.0.0.1:"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line %q lacks %q", line, want)
		}
	}
	if strings.Contains(logs.String(), a.Key) {
		t.Error("the log holds the API key")
	}
}

func TestNoAccessLogByDefault(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	s := startAPI(t, func(c *app.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	st, _, h := call(s, "GET", "/healthz", "", nil)
	if st != http.StatusOK || h.Get("X-Request-Id") == "" {
		t.Fatalf("healthz %d, X-Request-Id %q", st, h.Get("X-Request-Id"))
	}
	if strings.Contains(logs.String(), "component=access") {
		t.Errorf("access log without --access-log:\n%s", logs.String())
	}
}

// A failing webhook endpoint is logged at most once per host per 10 s
// (with the count left out), never with its path or query; an event that
// runs out of attempts is logged with what to do.
func TestOperatorLogsForFailures(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer hook.Close()
	s := startAPI(t, func(c *app.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Delivery.Schedule = []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond}
	})
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	st, body, _ := call(s, "PATCH", "/v1/inboxes/"+in, a.Key, map[string]string{"webhookUrl": hook.URL + "/hook?token=sekrit"})
	if st != http.StatusOK {
		t.Fatalf("set webhook: %d %s", st, body)
	}
	evt := s.Inbound(a.Key, in, "m")
	testserver.WaitFor(t, 10*time.Second, "the event fails", func() bool { return s.EventStatus(a.Key, evt) == "failed" })
	testserver.WaitFor(t, 5*time.Second, "the event-failed line", func() bool {
		return strings.Contains(logs.String(), "event failed")
	})
	out := logs.String()
	if n := strings.Count(out, `msg="webhook attempt failed"`); n != 1 {
		t.Errorf("%d webhook-failed lines for 3 failed attempts to one host within 10 s, want 1:\n%s", n, out)
	}
	for _, want := range []string{"host=" + strings.TrimPrefix(hook.URL, "http://"), "http_status=502", "event=" + evt, "attempts=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sekrit") {
		t.Errorf("the log holds the webhook URL's query:\n%s", out)
	}
}

// A 4029 close is logged (rate-limited), with the account and key id.
func TestWSRateLimitCloseIsLogged(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	s := testserver.Start(t, func(c *app.Config) {
		c.WS.RateFrames, c.WS.RateWindow = 2, time.Hour
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	acc := s.NewAccount("a")
	c := dialWS(t, s, acc.Key)
	c.pingPong()
	c.pingPong()
	c.send(map[string]string{"type": "ping"})
	c.expectClose(4029)
	testserver.WaitFor(t, 5*time.Second, "the 4029 log line", func() bool {
		return strings.Contains(logs.String(), "over the rate limit (4029)")
	})
	if !strings.Contains(logs.String(), "account="+acc.ID) || strings.Contains(logs.String(), acc.Key) {
		t.Errorf("log:\n%s", logs.String())
	}
}
