// Package testserver starts a real mailwire node for tests: Pebble in a
// temporary directory, the HTTP/WebSocket engine and (optionally) SMTP on
// 127.0.0.1 with ports picked by the kernel, and the real delivery
// pipeline. Nothing is mocked. It also holds the polling helper tests use
// instead of sleeping.
package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/internal/app"
)

// AdminToken is the admin token of every test server.
const AdminToken = "test-admin-token"

// Server is a running node.
type Server struct {
	*app.App
	t   testing.TB
	cfg app.Config
	// Dir is the data directory (kept across Restart).
	Dir string
	// URL is http://host:port; WSURL is ws://host:port/v1/ws.
	URL, WSURL string
	stopped    bool
}

// Logger returns the logger tests use: silent unless MAILWIRE_TEST_LOG is
// set (then debug lines go to stderr).
func Logger() *slog.Logger {
	logOnce.Do(func() {
		if os.Getenv("MAILWIRE_TEST_LOG") != "" {
			logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		engine.RouteNBIOLogs(logger) // nbio's logger is process-wide
	})
	return logger
}

var (
	logOnce sync.Once
	logger  *slog.Logger
)

// DefaultConfig is the configuration tests start from: loopback, port 0,
// no SMTP, private webhooks allowed, the admin API on.
func DefaultConfig(dir string) app.Config {
	cfg := app.Config{
		HTTPAddr:   "127.0.0.1:0",
		DataDir:    dir,
		AdminToken: AdminToken,
		Version:    "test",
		Logger:     Logger(),
	}
	cfg.Ingest.MailDomain = "mail.test"
	cfg.Delivery.Webhook.AllowPrivate = true
	cfg.Delivery.Webhook.Timeout = 2 * time.Second
	return cfg
}

// Start starts a node with DefaultConfig changed by mods; it is stopped
// when the test ends.
func Start(t testing.TB, mods ...func(*app.Config)) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir()}
	s.cfg = DefaultConfig(s.Dir)
	if m := clusterFromEnv(t); m != nil {
		mods = append([]func(*app.Config){m}, mods...)
	}
	for _, m := range mods {
		m(&s.cfg)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	a, err := app.Start(s.cfg)
	if err != nil {
		s.t.Fatalf("cannot start mailwire: %v", err)
	}
	s.App = a
	s.URL = "http://" + a.HTTPAddr()
	s.WSURL = "ws://" + a.HTTPAddr() + "/v1/ws"
	s.stopped = false
}

// Config is the configuration the node runs with.
func (s *Server) Config() app.Config { return s.cfg }

// Stop shuts the node down gracefully (idempotent).
func (s *Server) Stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.App.Shutdown(ctx); err != nil {
		s.t.Errorf("shutdown: %v", err)
	}
}

// Restart stops the node and starts it again on the same data directory
// (on a new port).
func (s *Server) Restart(mods ...func(*app.Config)) {
	s.t.Helper()
	s.Stop()
	for _, m := range mods {
		m(&s.cfg)
	}
	s.start()
}

// Account is an account with one API key.
type Account struct {
	ID, Key string
}

// NewAccount creates an account through the admin API.
func (s *Server) NewAccount(name string) Account {
	s.t.Helper()
	var out struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts", AdminToken, map[string]string{"name": name}, http.StatusCreated, &out)
	return Account{ID: out.ID, Key: out.APIKey}
}

// NewInbox creates an inbox for the key's account and returns its id.
func (s *Server) NewInbox(key, mailbox string) string {
	s.t.Helper()
	var out struct{ ID string }
	s.MustJSON("POST", "/v1/inboxes", key, map[string]string{"mailboxName": mailbox}, http.StatusCreated, &out)
	return out.ID
}

// Inbound posts a JSON inbound message and returns the event id.
func (s *Server) Inbound(key, inboxID, subject string) (eventID string) {
	s.t.Helper()
	var out struct{ MessageID, EventID, ThreadID string }
	s.MustJSON("POST", "/v1/inboxes/"+inboxID+"/inbound", key,
		map[string]string{"from": "sender@example.com", "subject": subject, "text": "body of " + subject},
		http.StatusAccepted, &out)
	return out.EventID
}

// Do sends a request; body is JSON-encoded unless it is []byte or nil.
func (s *Server) Do(method, path, key string, body any, hdr ...string) (int, []byte, http.Header) {
	s.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("cannot encode body: %v", err)
		}
		rd, ct = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		s.t.Fatalf("cannot build request: %v", err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, data, resp.Header
}

// MustJSON sends a request, checks the status and decodes the answer into
// out (when out is not nil).
func (s *Server) MustJSON(method, path, key string, body any, want int, out any) {
	s.t.Helper()
	code, data, _ := s.Do(method, path, key, body)
	if code != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: cannot decode %s: %v", method, path, data, err)
		}
	}
}

// WaitFor polls cond until it holds or timeout passes (then the test
// fails with msg). Tests wait on conditions, never on sleeps.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, msg)
		}
		time.Sleep(delay)
	}
}

// Never checks that cond stays false for d, polling it: the one honest way
// to test that something does not happen (a retry that must not come).
func Never(t testing.TB, d time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("happened, but must not: %s", msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// EventStatus returns an event's status through the API.
func (s *Server) EventStatus(key, evtID string) string {
	s.t.Helper()
	var out struct{ Status string }
	s.MustJSON("GET", "/v1/events/"+evtID, key, nil, http.StatusOK, &out)
	return out.Status
}

// Sprintf is fmt.Sprintf (keeps test files' imports short).
var Sprintf = fmt.Sprintf
