package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/delivery/webhook"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

type listenConfig struct {
	server, token, forwardTo, forwardSecret, stateFile string
	inboxes                                            stringsFlag
	noAck                                              bool
	out, errOut                                        io.Writer
}

// listen is `mailwire listen`: a resilient client of /v1/ws.
func listen(args []string) error {
	c := listenConfig{out: os.Stdout, errOut: os.Stderr}
	fs := flag.NewFlagSet("mailwire listen", flag.ContinueOnError)
	fs.StringVar(&c.server, "server", "http://127.0.0.1:8080", "the mailwire server `URL`")
	fs.StringVar(&c.token, "token", "", "the account's API `key` (om_...)")
	fs.Var(&c.inboxes, "inbox", "subscribe to this inbox `id` only (repeatable); default: every inbox")
	fs.StringVar(&c.forwardTo, "forward-to", "", "POST each event, signed, to this local `URL` instead of printing it")
	fs.StringVar(&c.forwardSecret, "forward-secret", "", "the whsec_ `secret` that signs forwarded events (default: a new one, printed at start)")
	fs.StringVar(&c.stateFile, "state", "", "`file` keeping the last event id for resuming (default: in the user config directory)")
	fs.BoolVar(&c.noAck, "no-ack", false, "do not ack events")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailwire listen --server URL --token KEY [--inbox ID]... [--forward-to URL]\n\n"+
			"Prints each event as one JSON line (or forwards it), reconnects with backoff and resumes\n"+
			"after the last event seen. Flags also read MAILWIRE_<FLAG>.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if err := applyEnv(fs); err != nil {
		return err
	}
	if c.token == "" {
		return errors.New("listen: --token (or MAILWIRE_TOKEN) is required")
	}
	if c.forwardTo != "" && c.forwardSecret == "" {
		sec, err := webhook.NewSecret()
		if err != nil {
			return err
		}
		c.forwardSecret = sec
		fmt.Fprintf(c.errOut, "forwarding signed with secret %s\n", sec)
	}
	if c.stateFile == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			dir = "."
		}
		h := sha256.Sum256([]byte(c.server + "|" + c.token))
		c.stateFile = filepath.Join(dir, "mailwire", "listen-"+hex.EncodeToString(h[:6])+".state")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := runListen(ctx, &c)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// errStop ends listen for good (the server refused the key).
type errStop struct{ msg string }

func (e errStop) Error() string { return e.msg }

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

func runListen(ctx context.Context, c *listenConfig) error {
	target, err := wsURL(c.server)
	if err != nil {
		return err
	}
	last := readState(c.stateFile)
	seen := newRecent(4096)
	backoff := 500 * time.Millisecond
	for {
		connected, err := listenOnce(ctx, c, target, &last, seen)
		var stop errStop
		if errors.As(err, &stop) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if connected {
			backoff = 500 * time.Millisecond
		}
		wait := backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		fmt.Fprintf(c.errOut, "disconnected (%v); reconnecting in %s\n", err, wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// listenOnce runs one connection until it fails; connected reports that
// the subscription was confirmed (the backoff resets).
func listenOnce(ctx context.Context, c *listenConfig, target string, last *string, seen *recent) (connected bool, err error) {
	h := http.Header{"Authorization": {"Bearer " + c.token}}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, target, h)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return false, errStop{fmt.Sprintf("the server refused the connection: %s", resp.Status)}
		}
		return false, err
	}
	defer conn.Close()
	stopWatch := context.AfterFunc(ctx, func() {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		_ = conn.Close()
	})
	defer stopWatch()

	sub := map[string]any{"type": "subscribe"}
	if len(c.inboxes) > 0 {
		sub["inbox_ids"] = []string(c.inboxes)
	}
	if *last != "" {
		sub["last_event_id"] = *last
	}
	if err := conn.WriteJSON(sub); err != nil {
		return false, err
	}
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == 4001 {
				return connected, errStop{"unauthorized: " + ce.Text}
			}
			return connected, err
		}
		var head struct {
			Type    string          `json:"type"`
			Event   string          `json:"event"`
			EventID string          `json:"event_id"`
			Message json.RawMessage `json:"message"` // error text, or an event's message object
		}
		if err := json.Unmarshal(msg, &head); err != nil {
			fmt.Fprintf(c.errOut, "ignoring a frame that is not JSON: %v\n", err)
			continue
		}
		switch {
		case head.Event != "":
			if !seen.add(head.EventID) {
				continue // a duplicate (replay overlapping live delivery)
			}
			if err := c.deliver(ctx, head.EventID, msg); err != nil {
				return connected, fmt.Errorf("cannot forward %s: %w", head.EventID, err)
			}
			*last = head.EventID
			writeState(c.stateFile, head.EventID)
			if !c.noAck {
				if err := conn.WriteJSON(map[string]string{"type": "ack", "event_id": head.EventID}); err != nil {
					return connected, err
				}
			}
		case head.Type == "subscribed":
			connected = true
			fmt.Fprintf(c.errOut, "subscribed: %s\n", msg)
		case head.Type == "error":
			var text string
			_ = json.Unmarshal(head.Message, &text)
			fmt.Fprintf(c.errOut, "server: %s\n", text)
		}
	}
}

// deliver prints the event as one JSON line, or forwards it signed.
func (c *listenConfig) deliver(ctx context.Context, evtID string, msg []byte) error {
	if c.forwardTo == "" {
		_, err := fmt.Fprintf(c.out, "%s\n", bytes.TrimSpace(msg))
		return err
	}
	ts := time.Now().Unix()
	hd := webhook.SignHeaders(c.forwardSecret, evtID, ts, msg)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.forwardTo, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tss := strconv.FormatInt(ts, 10)
	for k, v := range map[string]string{
		"X-Event-Id": evtID, "X-Timestamp": tss, "X-Signature": hd.XSignature,
		"webhook-id": evtID, "webhook-timestamp": tss, "webhook-signature": hd.WebhookSignature,
	} {
		req.Header[k] = []string{v} // as written: some receivers match case-sensitively
	}
	client := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", c.forwardTo, resp.Status)
	}
	return nil
}

func readState(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// writeState saves the last event id atomically (write, then rename).
func writeState(path, id string) {
	_ = os.MkdirAll(filepath.Dir(path), 0o700)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, []byte(id+"\n"), 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

// recent remembers the last n event ids to drop duplicates.
type recent struct {
	n    int
	set  map[string]struct{}
	ring []string
	pos  int
}

func newRecent(n int) *recent {
	return &recent{n: n, set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add reports whether id is new.
func (r *recent) add(id string) bool {
	if _, ok := r.set[id]; ok {
		return false
	}
	if old := r.ring[r.pos]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.pos] = id
	r.pos = (r.pos + 1) % r.n
	r.set[id] = struct{}{}
	return true
}
