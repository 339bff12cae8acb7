// Package listener is `mailwire listen`: a resilient client of /v1/ws for
// local development. It subscribes with "ack": true, prints each event (a
// readable line, or JSON) or forwards it, signed, to a local URL, and acks
// an event only once it has handled it (printed, or answered 2xx by the
// local target). It reconnects with backoff and resumes after the last
// handled event, kept on disk.
//
// # Never losing an event
//
// Events are handled one at a time, in arrival order. A local target that
// fails is retried with backoff (the production schedule by default) for
// as long as it takes; meanwhile the connection keeps reading into a
// bounded queue (maxQueued), so pings are answered; when the queue is
// full it stops reading (the server may then close it as a slow
// consumer, and the next connection resumes from the cursor). The cursor
// never moves past an event that has not been handled, and unhandled
// events are never acked, so the server keeps them pending: a crash loses
// nothing.
//
// # Concurrency
//
// Run owns every goroutine it starts (one reader per connection) and
// returns only after they have ended.
package listener

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/delivery/webhook"
)

// Config configures a listener.
type Config struct {
	// Server is the mailwire base URL (http(s)://host:port).
	Server string
	// Token is the account's API key.
	Token string
	// Inboxes and Events narrow the subscription (empty: all).
	Inboxes, Events []string
	// Since, when set, starts after this event id instead of the saved
	// cursor (backfill).
	Since string
	// ForwardTo, when set, POSTs each event to this URL instead of
	// printing it.
	ForwardTo string
	// ForwardSecret signs forwarded events; "" means the state
	// directory's own secret (made on first use, stable afterwards).
	ForwardSecret string
	// Retry is the delay before each local attempt after the first (the
	// last one repeats). Default: the production schedule's.
	Retry []time.Duration
	// ForwardTimeout bounds one local attempt. Default 15s.
	ForwardTimeout time.Duration
	// StateDir keeps the cursor and the forward secret. Default: the user
	// config directory's mailwire/listen-<server and key hash>.
	StateDir string
	// JSON prints events as JSON lines; otherwise a readable line.
	JSON bool
	// MaxReconnects ends Run after this many failed connection attempts
	// in a row; 0 means never.
	MaxReconnects int
	// Out receives events (print mode) and nothing else; Log receives
	// every other line. Defaults: os.Stdout, os.Stderr.
	Out, Log io.Writer
}

// Fatal is an error after which retrying cannot help (a refused key, too
// many connections, an unknown inbox); Run returns it.
type Fatal struct{ Reason string }

func (f Fatal) Error() string { return f.Reason }

// Limits and defaults.
const (
	// maxQueued bounds the events read but not yet handled; past it the
	// connection stops reading.
	maxQueued = 1000
	// recentHandled is how many handled ids are remembered: a copy of
	// one (a replay overlapping live delivery, a server retry) is acked
	// again and not handled twice.
	recentHandled = 4096
	backoffMin    = 500 * time.Millisecond
	backoffMax    = 30 * time.Second
)

// DefaultRetry is PROTOCOL.md §6's schedule after its first attempt.
var DefaultRetry = []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}

// DefaultStateDir is where the state of a (server, key) pair is kept.
func DefaultStateDir(server, token string) string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	h := sha256.Sum256([]byte(server + "|" + token))
	return filepath.Join(dir, "mailwire", "listen-"+hex.EncodeToString(h[:6]))
}

// Listener is one `mailwire listen`.
type Listener struct {
	cfg    Config
	target string
	secret string
	cursor string
	recent *recent
	client *http.Client
}

// New checks cfg and prepares the state directory (and the forward
// secret, printed once when it is made).
func New(cfg Config) (*Listener, error) {
	if cfg.Token == "" {
		return nil, errors.New("--token (or MAILWIRE_TOKEN) is required")
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if len(cfg.Retry) == 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = 15 * time.Second
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir(cfg.Server, cfg.Token)
	}
	target, err := wsURL(cfg.Server)
	if err != nil {
		return nil, err
	}
	if cfg.ForwardTo != "" {
		u, err := url.Parse(cfg.ForwardTo)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--forward-to %q is not an http(s) URL", cfg.ForwardTo)
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the state directory: %w", err)
	}
	l := &Listener{cfg: cfg, target: target, recent: newRecent(recentHandled),
		client: &http.Client{Timeout: cfg.ForwardTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	l.cursor = readFile(l.path("cursor"))
	if cfg.Since != "" {
		l.cursor = cfg.Since
	}
	if cfg.ForwardTo != "" {
		l.secret = cfg.ForwardSecret
		if l.secret == "" {
			if l.secret, err = l.stateSecret(); err != nil {
				return nil, err
			}
		}
		l.logf("forwarding to %s, signed with %s (kept in %s)", cfg.ForwardTo, l.secret, cfg.StateDir)
	}
	return l, nil
}

func (l *Listener) path(name string) string { return filepath.Join(l.cfg.StateDir, name) }

func (l *Listener) logf(format string, args ...any) {
	fmt.Fprintf(l.cfg.Log, format+"\n", args...)
}

// stateSecret is the state directory's signing secret, made on first use.
func (l *Listener) stateSecret() (string, error) {
	p := l.path("forward-secret")
	if s := readFile(p); strings.HasPrefix(s, "whsec_") {
		return s, nil
	}
	s, err := webhook.NewSecret()
	if err != nil {
		return "", err
	}
	if err := writeFile(p, s); err != nil {
		return "", fmt.Errorf("cannot save the forward secret: %w", err)
	}
	return s, nil
}

// Run listens until ctx ends (it returns ctx's error), a Fatal error, or
// MaxReconnects failed attempts in a row.
func (l *Listener) Run(ctx context.Context) error {
	backoff := backoffMin
	failures := 0
	for {
		connected, err := l.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fatal Fatal
		if errors.As(err, &fatal) {
			return err
		}
		if connected {
			backoff, failures = backoffMin, 0
		} else {
			failures++
			if l.cfg.MaxReconnects > 0 && failures >= l.cfg.MaxReconnects {
				return Fatal{fmt.Sprintf("giving up after %d failed connection attempts: %v", failures, err)}
			}
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		l.logf("disconnected (%v); reconnecting in %s", err, wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// frame is what the listener reads of a server frame.
type frame struct {
	raw     []byte
	Type    string          `json:"type"`
	Event   string          `json:"event"`
	EventID string          `json:"event_id"`
	Message json.RawMessage `json:"message"` // error text, or an event's message object
}

// session runs one connection; connected reports that the subscription
// was confirmed.
func (l *Listener) session(ctx context.Context) (connected bool, err error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, l.target, http.Header{"Authorization": {"Bearer " + l.cfg.Token}})
	if err != nil {
		if resp != nil {
			switch {
			case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
				return false, fmt.Errorf("the server answered %s", resp.Status)
			case resp.StatusCode >= 400:
				return false, Fatal{"the server refused the connection: " + resp.Status}
			}
		}
		return false, err
	}
	defer conn.Close()
	var wmu sync.Mutex // the reader answers nothing; acks and the close come from here
	write := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteJSON(v)
	}
	stop := context.AfterFunc(ctx, func() {
		wmu.Lock()
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		wmu.Unlock()
		_ = conn.Close()
	})
	defer stop()

	sub := map[string]any{"type": "subscribe", "ack": true}
	if len(l.cfg.Inboxes) > 0 {
		sub["inbox_ids"] = l.cfg.Inboxes
	}
	if len(l.cfg.Events) > 0 {
		sub["event_types"] = l.cfg.Events
	}
	if l.cursor != "" {
		sub["last_event_id"] = l.cursor
	}
	if err := write(sub); err != nil {
		return false, err
	}

	events := make(chan frame, maxQueued)
	readErr := make(chan error, 1)
	subscribed := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(events)
		readErr <- l.read(ctx, conn, events, subscribed)
	}()
	defer wg.Wait()
	for {
		select {
		case <-subscribed:
			connected, subscribed = true, nil
			continue
		case f, ok := <-events:
			if !ok {
				err := <-readErr
				return connected, err
			}
			if err := l.handle(ctx, f, write); err != nil {
				_ = conn.Close()
				for range events { // let the reader end
				}
				return connected, err
			}
		}
	}
}

// read reads frames until the connection ends: events go to the queue
// (blocking when it is full), the rest is reported here.
func (l *Listener) read(ctx context.Context, conn *websocket.Conn, events chan<- frame, subscribed chan<- struct{}) error {
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				switch ce.Code {
				case 4001:
					return Fatal{"the server refused the API key (4001): " + ce.Text}
				case 4008:
					return Fatal{"too many connections for this account (4008): " + ce.Text}
				}
				return fmt.Errorf("closed by the server: %d %s", ce.Code, ce.Text)
			}
			return err
		}
		f := frame{raw: msg}
		if err := json.Unmarshal(msg, &f); err != nil {
			l.logf("ignoring a frame that is not JSON: %v", err)
			continue
		}
		switch {
		case f.Event != "":
			select {
			case events <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
		case f.Type == "subscribed":
			l.logf("subscribed: %s", msg)
			close(subscribed)
			subscribed = nil
		case f.Type == "error":
			var text string
			_ = json.Unmarshal(f.Message, &text)
			if strings.Contains(text, "not found in this account") {
				return Fatal{"the server refused the subscription: " + text}
			}
			l.logf("server: %s", text)
		}
	}
}

// handle prints or forwards one event (retrying a failing local target
// until it takes it or ctx ends), then acks it and moves the cursor.
func (l *Listener) handle(ctx context.Context, f frame, write func(any) error) error {
	if !l.recent.has(f.EventID) {
		if l.cfg.ForwardTo == "" {
			if err := l.print(f); err != nil {
				return err
			}
		} else if err := l.forward(ctx, f); err != nil {
			return err
		}
		l.recent.add(f.EventID)
		if f.EventID > l.cursor {
			l.cursor = f.EventID
			if err := writeFile(l.path("cursor"), f.EventID); err != nil {
				l.logf("cannot save the cursor: %v", err)
			}
		}
	}
	// Acked after handling (or again, for a copy of a handled event).
	return write(map[string]string{"type": "ack", "event_id": f.EventID})
}

// summary is what the readable lines show of an event.
type summary struct {
	At      string `json:"delivered_at"`
	Message struct {
		To      string `json:"to"`
		From    string `json:"from"`
		Subject string `json:"subject"`
	} `json:"message"`
}

func (l *Listener) print(f frame) error {
	if l.cfg.JSON {
		_, err := fmt.Fprintf(l.cfg.Out, "%s\n", bytes.TrimSpace(f.raw))
		return err
	}
	var s summary
	_ = json.Unmarshal(f.raw, &s)
	_, err := fmt.Fprintf(l.cfg.Out, "%s  %s  %s  %s  from %s  %q\n", s.At, f.EventID, f.Event, s.Message.To, s.Message.From, s.Message.Subject)
	return err
}

// forward posts the event, signed, until the local target answers 2xx;
// one line per attempt.
func (l *Listener) forward(ctx context.Context, f frame) error {
	var s summary
	_ = json.Unmarshal(f.raw, &s)
	for n := 0; ; n++ {
		start := time.Now()
		status, err := l.post(ctx, f)
		// Always in milliseconds ("0ms", not Go's "0s" for a zero
		// duration): scripts parse these lines.
		took := fmt.Sprintf("%dms", time.Since(start).Milliseconds())
		what := fmt.Sprintf("--> %s %s %s", f.EventID, f.Event, s.Message.To)
		if err == nil && status/100 == 2 {
			l.logf("%s [%d] %s", what, status, took)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		delay := l.cfg.Retry[min(n, len(l.cfg.Retry)-1)]
		if err != nil {
			l.logf("%s %v %s, retrying in %s", what, err, took, delay)
		} else {
			l.logf("%s [%d] %s, retrying in %s", what, status, took, delay)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// post sends one signed attempt; it returns the status, or the error that
// kept it from getting one.
func (l *Listener) post(ctx context.Context, f frame) (int, error) {
	body := f.raw
	ts := time.Now().Unix()
	hd := webhook.SignHeaders(l.secret, f.EventID, ts, body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.cfg.ForwardTo, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	tss := strconv.FormatInt(ts, 10)
	for k, v := range map[string]string{
		"X-Event-Id": f.EventID, "X-Timestamp": tss, "X-Signature": hd.XSignature,
		"webhook-id": f.EventID, "webhook-timestamp": tss, "webhook-signature": hd.WebhookSignature,
	} {
		req.Header[k] = []string{v} // as written: some receivers match case-sensitively
	}
	resp, err := l.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func wsURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("--server: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	case "ws", "wss":
	default:
		return "", fmt.Errorf("--server %q must be an http(s) URL", server)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/v1/ws"
	return u.String(), nil
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// writeFile replaces path's content atomically (write, then rename).
func writeFile(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// recent remembers the last n handled event ids.
type recent struct {
	n    int
	set  map[string]struct{}
	ring []string
	pos  int
}

func newRecent(n int) *recent {
	return &recent{n: n, set: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (r *recent) has(id string) bool { _, ok := r.set[id]; return ok }

func (r *recent) add(id string) {
	if r.has(id) {
		return
	}
	if old := r.ring[r.pos]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.pos] = id
	r.pos = (r.pos + 1) % r.n
	r.set[id] = struct{}{}
}
