package listener_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/listener"
	"github.com/mailwire/mailwire/internal/testserver"
)

func TestMain(m *testing.M) { testserver.RunWithLeakCheck(m) }

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type running struct {
	out, log *syncBuffer
	stop     func() error
	done     chan error
}

// start runs a listener until the test ends (or stop is called).
func start(t *testing.T, c listener.Config) *running {
	t.Helper()
	r := &running{out: &syncBuffer{}, log: &syncBuffer{}, done: make(chan error, 1)}
	c.Out, c.Log = r.out, r.log
	l, err := listener.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- l.Run(ctx) }()
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-r.done:
			case <-time.After(10 * time.Second):
				t.Fatal("listen did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func (r *running) waitLog(t *testing.T, what, sub string) {
	t.Helper()
	testserver.WaitFor(t, 10*time.Second, what, func() bool { return strings.Contains(r.log.String(), sub) })
}

// withAckTimeout holds acking connections to acks (the CLI default is 30s).
func withAckTimeout(c *app.Config) { c.Delivery.AckTimeout = 20 * time.Second }

func TestListenPrintsJSONAndResumes(t *testing.T) {
	s := testserver.Start(t, withAckTimeout)
	acc := s.NewAccount("l")
	inbox := s.NewInbox(acc.Key, "agent")
	cfg := listener.Config{Server: s.URL, Token: acc.Key, StateDir: t.TempDir(), JSON: true}

	r := start(t, cfg)
	r.waitLog(t, "subscribed", "subscribed:")
	e1 := s.Inbound(acc.Key, inbox, "first")
	testserver.WaitFor(t, 10*time.Second, "event printed", func() bool { return strings.Contains(r.out.String(), e1) })
	lines := strings.Split(strings.TrimSpace(r.out.String()), "\n")
	var ev map[string]any
	if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &ev) != nil || ev["event_id"] != e1 {
		t.Fatalf("output %q, want one JSON line for %s", r.out.String(), e1)
	}
	// Printed, hence acked: delivered although the connection acks.
	testserver.WaitFor(t, 10*time.Second, "event delivered", func() bool { return s.EventStatus(acc.Key, e1) == "delivered" })
	if err := r.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("listen returned %v after cancel", err)
	}

	// While nobody listens, another event arrives; a new listen resumes
	// after the last handled one: the new event only.
	e2 := s.Inbound(acc.Key, inbox, "second")
	r = start(t, cfg)
	testserver.WaitFor(t, 10*time.Second, "resumed event printed", func() bool { return strings.Contains(r.out.String(), e2) })
	if strings.Contains(r.out.String(), e1) {
		t.Fatalf("the resumed listen printed the old event again: %s", r.out.String())
	}
}

func TestListenReadableLine(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("l")
	inbox := s.NewInbox(acc.Key, "agent")
	r := start(t, listener.Config{Server: s.URL, Token: acc.Key, StateDir: t.TempDir()})
	r.waitLog(t, "subscribed", "subscribed:")
	e := s.Inbound(acc.Key, inbox, "Hello there")
	testserver.WaitFor(t, 10*time.Second, "event printed", func() bool { return strings.Contains(r.out.String(), e) })
	line := strings.TrimSpace(r.out.String())
	want := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+Z  ` + e + `  message\.received  agent@mail\.test  from sender@example\.com  "Hello there"$`)
	if !want.MatchString(line) {
		t.Fatalf("line %q", line)
	}
}

// Issue: with a local target answering 500, the event was never forwarded
// again and the server recorded it delivered. Now the target is retried
// until it answers 2xx, one line per attempt, and only then is the event
// acked (delivered on the server) and the cursor moved.
func TestListenForwardRetriesUntilTheTargetTakesIt(t *testing.T) {
	s := testserver.Start(t, withAckTimeout)
	acc := s.NewAccount("f")
	inbox := s.NewInbox(acc.Key, "agent")
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	var got []string
	allow := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(r.Header.Get("X-Timestamp") + "." + string(body)))
		if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(r.Header.Get("X-Signature"))) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get("X-Event-Id"))
		n := len(got)
		mu.Unlock()
		if n <= 2 {
			http.Error(w, "not ready", http.StatusInternalServerError)
			return
		}
		<-allow
	}))
	defer recv.Close()
	stateDir := t.TempDir()
	r := start(t, listener.Config{Server: s.URL, Token: acc.Key, ForwardTo: recv.URL, ForwardSecret: secret,
		Retry: []time.Duration{50 * time.Millisecond}, StateDir: stateDir})
	r.waitLog(t, "subscribed", "subscribed:")
	e := s.Inbound(acc.Key, inbox, "fwd")
	r.waitLog(t, "the second failure", "[500]")
	testserver.WaitFor(t, 10*time.Second, "the third attempt", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 3
	})
	// The target has not taken it yet: not delivered, cursor not moved.
	if st := s.EventStatus(acc.Key, e); st == "delivered" {
		t.Fatal("the server recorded the event delivered before the local target took it")
	}
	if b, _ := os.ReadFile(filepath.Join(stateDir, "cursor")); len(b) != 0 {
		t.Fatalf("the cursor moved to %q before the local target took the event", b)
	}
	close(allow)
	testserver.WaitFor(t, 10*time.Second, "delivered", func() bool { return s.EventStatus(acc.Key, e) == "delivered" })
	testserver.WaitFor(t, 10*time.Second, "cursor saved", func() bool {
		b, _ := os.ReadFile(filepath.Join(stateDir, "cursor"))
		return strings.TrimSpace(string(b)) == e
	})
	mu.Lock()
	for _, id := range got {
		if id != e {
			t.Errorf("forwarded %s, want only %s", id, e)
		}
	}
	mu.Unlock()
	attempt := regexp.MustCompile(`(?m)^--> ` + e + ` message\.received agent@mail\.test \[(\d+)\] \d+ms(, retrying in 50ms)?$`)
	lines := attempt.FindAllStringSubmatch(r.log.String(), -1)
	if len(lines) != 3 || lines[0][1] != "500" || lines[1][1] != "500" || lines[2][1] != "200" || lines[2][2] != "" {
		t.Fatalf("attempt lines %q in:\n%s", lines, r.log.String())
	}
	if r.out.String() != "" {
		t.Errorf("forwarding also printed %q", r.out.String())
	}
}

// A local target that cannot be reached is retried too, and the line says
// why.
func TestListenForwardToADeadTarget(t *testing.T) {
	s := testserver.Start(t, withAckTimeout)
	acc := s.NewAccount("f")
	inbox := s.NewInbox(acc.Key, "agent")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String() + "/hook"
	ln.Close()
	r := start(t, listener.Config{Server: s.URL, Token: acc.Key, ForwardTo: dead, Retry: []time.Duration{20 * time.Millisecond}, StateDir: t.TempDir()})
	r.waitLog(t, "subscribed", "subscribed:")
	e := s.Inbound(acc.Key, inbox, "fwd")
	testserver.WaitFor(t, 10*time.Second, "two failed attempts", func() bool {
		return strings.Count(r.log.String(), "--> "+e) >= 2 && strings.Contains(r.log.String(), "connection refused")
	})
	if st := s.EventStatus(acc.Key, e); st == "delivered" {
		t.Fatal("delivered although the target was never reached")
	}
}

func TestListenResumesAfterAServerRestart(t *testing.T) {
	s := testserver.Start(t, withAckTimeout)
	acc := s.NewAccount("l")
	inbox := s.NewInbox(acc.Key, "agent")
	r := start(t, listener.Config{Server: s.URL, Token: acc.Key, StateDir: t.TempDir(), JSON: true})
	r.waitLog(t, "subscribed", "subscribed:")
	e1 := s.Inbound(acc.Key, inbox, "before")
	testserver.WaitFor(t, 10*time.Second, "first event", func() bool { return strings.Contains(r.out.String(), e1) })
	addr := strings.TrimPrefix(s.URL, "http://")
	s.Restart(func(c *app.Config) { c.HTTPAddr = addr })
	testserver.WaitFor(t, 20*time.Second, "reconnected", func() bool { return strings.Count(r.log.String(), "subscribed:") == 2 })
	e2 := s.Inbound(acc.Key, inbox, "after")
	testserver.WaitFor(t, 10*time.Second, "second event", func() bool { return strings.Contains(r.out.String(), e2) })
	if n := strings.Count(r.out.String(), e1); n != 1 {
		t.Fatalf("the first event was printed %d times", n)
	}
}

// Each case that retrying cannot fix ends listen with a one-line reason.
func TestListenExitsWhenRetryingCannotHelp(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.MaxConnsPerAccount = 1 })
	acc := s.NewAccount("l")
	run := func(c listener.Config) error {
		t.Helper()
		c.Out, c.Log, c.StateDir = io.Discard, io.Discard, t.TempDir()
		l, err := listener.New(c)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return l.Run(ctx)
	}
	f := func(name string, c listener.Config, want string) {
		t.Helper()
		err := run(c)
		var fatal listener.Fatal
		if !errors.As(err, &fatal) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: %v, want a one-line reason with %q", name, err, want)
		}
	}
	f("bad key", listener.Config{Server: s.URL, Token: "om_" + strings.Repeat("0", 48)}, "4001")
	f("unknown inbox", listener.Config{Server: s.URL, Token: acc.Key, Inboxes: []string{"inb_01M8C9RB9X5V865CKTKNCS7WF4"}}, "not found in this account")
	// The account's one connection: the previous case's socket may still
	// be closing on the server, so the first dial can itself get 4008.
	var held *websocket.Conn
	testserver.WaitFor(t, 10*time.Second, "a connection holding the account's only slot", func() bool {
		c, _, err := websocket.DefaultDialer.Dial(s.WSURL, http.Header{"Authorization": {"Bearer " + acc.Key}})
		if err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if c.WriteJSON(map[string]string{"type": "ping"}) == nil {
			var f map[string]any
			if c.ReadJSON(&f) == nil && f["type"] == "pong" {
				_ = c.SetReadDeadline(time.Time{})
				held = c
				return true
			}
		}
		c.Close()
		return false
	})
	f("too many connections", listener.Config{Server: s.URL, Token: acc.Key}, "4008")
	held.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	f("server unreachable", listener.Config{Server: down, Token: acc.Key, MaxReconnects: 2}, "giving up after 2 failed connection attempts")
}

// The forward secret belongs to the state directory: made once, printed
// at start, the same on every run (a local app can keep it).
func TestListenForwardSecretIsStable(t *testing.T) {
	dir := t.TempDir()
	secret := func() string {
		var log syncBuffer
		if _, err := listener.New(listener.Config{Server: "http://127.0.0.1:1", Token: "om_x", ForwardTo: "http://127.0.0.1:2/hook", StateDir: dir, Out: io.Discard, Log: &log}); err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`signed with (whsec_\S+)`).FindStringSubmatch(log.String())
		if m == nil {
			t.Fatalf("no secret printed: %q", log.String())
		}
		return m[1]
	}
	if a, b := secret(), secret(); a != b {
		t.Fatalf("secret changed between runs: %s then %s", a, b)
	}
}
