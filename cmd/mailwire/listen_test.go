package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

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

// startListen runs runListen until the test ends (or stop is called) and
// returns its outputs and a function that stops it and returns its error.
func startListen(t *testing.T, c listenConfig) (out, errOut *syncBuffer, stop func() error) {
	t.Helper()
	out, errOut = &syncBuffer{}, &syncBuffer{}
	c.out, c.errOut = out, errOut
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runListen(ctx, &c) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("listen did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return out, errOut, stop
}

func TestListenPrintsAndResumes(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("l")
	inbox := s.NewInbox(acc.Key, "agent")
	state := filepath.Join(t.TempDir(), "state")
	cfg := listenConfig{server: s.URL, token: acc.Key, stateFile: state}

	out, errOut, stop := startListen(t, cfg)
	testserver.WaitFor(t, 10*time.Second, "subscribed", func() bool { return strings.Contains(errOut.String(), "subscribed:") })
	e1 := s.Inbound(acc.Key, inbox, "first")
	testserver.WaitFor(t, 10*time.Second, "event printed", func() bool { return strings.Contains(out.String(), e1) })
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("output %q, want one JSON line", out.String())
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev["event_id"] != e1 || ev["event"] != "message.received" {
		t.Fatalf("printed %q (%v)", lines[0], err)
	}
	testserver.WaitFor(t, 10*time.Second, "state saved", func() bool { return readState(state) == e1 })
	testserver.WaitFor(t, 10*time.Second, "event delivered", func() bool { return s.EventStatus(acc.Key, e1) == "delivered" })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("listen returned %v after cancel", err)
	}

	// While nobody listens, another event arrives; a new listen resumes
	// after the saved id: the new event only.
	e2 := s.Inbound(acc.Key, inbox, "second")
	out, errOut, _ = startListen(t, cfg)
	testserver.WaitFor(t, 10*time.Second, "resumed event printed", func() bool { return strings.Contains(out.String(), e2) })
	if strings.Contains(out.String(), e1) {
		t.Fatalf("the resumed listen printed the old event again: %s", out.String())
	}
	if !strings.Contains(errOut.String(), "subscribed:") {
		t.Errorf("stderr %q", errOut.String())
	}
}

func TestListenUnauthorizedStops(t *testing.T) {
	s := testserver.Start(t)
	c := listenConfig{server: s.URL, token: "om_" + strings.Repeat("0", 48), stateFile: filepath.Join(t.TempDir(), "st"),
		out: &syncBuffer{}, errOut: &syncBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := runListen(ctx, &c) // ends by itself: a refused key is not retried
	var stop errStop
	if !errors.As(err, &stop) || !strings.Contains(err.Error(), "unauthorized") {
		t.Fatalf("listen with a bad key: %v", err)
	}
}

func TestListenForward(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("f")
	inbox := s.NewInbox(acc.Key, "agent")
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	var mu sync.Mutex
	var got []string
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
		mu.Unlock()
	}))
	defer recv.Close()

	out, errOut, _ := startListen(t, listenConfig{server: s.URL, token: acc.Key, forwardTo: recv.URL, forwardSecret: secret,
		stateFile: filepath.Join(t.TempDir(), "st")})
	testserver.WaitFor(t, 10*time.Second, "subscribed", func() bool { return strings.Contains(errOut.String(), "subscribed:") })
	e := s.Inbound(acc.Key, inbox, "fwd")
	testserver.WaitFor(t, 10*time.Second, "forwarded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1 && got[0] == e
	})
	if out.String() != "" {
		t.Errorf("forwarding also printed %q", out.String())
	}
}

func TestListenStateFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "state")
	if readState(p) != "" {
		t.Fatal("missing state is not empty")
	}
	writeState(p, "evt_1")
	writeState(p, "evt_2")
	if got := readState(p); got != "evt_2" {
		t.Fatalf("state %q", got)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestWSURL(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		got, err := wsURL(in)
		if err != nil || got != want {
			t.Fatalf("wsURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	f("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/ws")
	f("http://127.0.0.1:8080/", "ws://127.0.0.1:8080/v1/ws")
	f("https://mail.example.com/base/", "wss://mail.example.com/base/v1/ws")
	f("ws://h:1", "ws://h:1/v1/ws")
	for _, bad := range []string{"ftp://h/", "127.0.0.1:8080", "://"} {
		if got, err := wsURL(bad); err == nil {
			t.Errorf("wsURL(%q) = %q, want an error", bad, got)
		}
	}
}

func TestRecent(t *testing.T) {
	r := newRecent(2)
	f := func(id string, want bool) {
		t.Helper()
		if got := r.add(id); got != want {
			t.Fatalf("add(%q) = %v, want %v", id, got, want)
		}
	}
	f("a", true)
	f("a", false)
	f("b", true)
	f("c", true) // evicts a
	f("b", false)
	f("a", true)
}
