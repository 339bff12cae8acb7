package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/store"
)

// testTimeout bounds every wait in the tests; nothing should come near it.
const testTimeout = 10 * time.Second

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// envOptions shape a test environment.
type envOptions struct {
	cfg       func(*Config)
	fs        vfs.FS // nil: the OS file system in t.TempDir()
	dir       string // with fs: the database directory
	mailboxes []string
	// quietDelivery delays every first delivery attempt by an hour, so the
	// dispatcher writes nothing while the test runs.
	quietDelivery bool
}

// env is a running server over a real Pebble store, a real dispatcher and
// a real ingest service, with one account owning the inboxes.
type env struct {
	t       testing.TB
	dir     string
	db      *store.DB
	disp    *delivery.Dispatcher
	in      *ingest.Service
	srv     *Server
	set     *metrics.Set
	logs    *syncBuffer
	account store.Account
	inboxes map[string]store.Inbox
	// shutdownErrOK: the test shut the server down with an error itself.
	shutdownErrOK bool

	stopOnce sync.Once
	stopErr  error
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, set: metrics.NewSet(), logs: &syncBuffer{}, inboxes: map[string]store.Inbox{}}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.dir = o.dir
	if o.fs == nil {
		e.dir = t.TempDir()
	}
	// Injected I/O errors are fatal to Pebble; in a test they panic (the
	// default exits the process).
	db, err := store.Open(store.Options{Dir: e.dir, FS: o.fs, Logger: log, CacheBytes: 8 << 20,
		OnFatal: func(msg string) { panic("pebble: " + msg) }})
	if err != nil {
		t.Fatal(err)
	}
	e.db = db
	dcfg := delivery.Config{Metrics: metrics.NewSet(), Logger: log}
	icfg := ingest.Config{MailDomain: "localhost"}
	if o.quietDelivery {
		dcfg.Schedule = []time.Duration{time.Hour}
	}
	e.disp = delivery.New(db, dcfg)
	e.disp.Start()
	t.Cleanup(func() {
		if err := e.stop(); err != nil && o.fs == nil {
			t.Errorf("%v", err)
		}
	})
	e.in = ingest.New(db, icfg)

	e.account, _, _, err = db.CreateAccount("test")
	if err != nil {
		t.Fatal(err)
	}
	mailboxes := o.mailboxes
	if mailboxes == nil {
		mailboxes = []string{"agent"}
	}
	for _, mb := range mailboxes {
		in, err := db.CreateInbox(store.Inbox{AccountID: e.account.ID, MailboxName: mb})
		if err != nil {
			t.Fatal(err)
		}
		e.inboxes[mb] = in
	}

	cfg := Config{
		Addr:           "127.0.0.1:0",
		CommandTimeout: 5 * time.Second,
		DataTimeout:    10 * time.Second,
		Metrics:        e.set,
		Logger:         log,
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.srv, err = New(cfg, db, e.in)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	return e
}

// stop shuts the server and the dispatcher down and closes the store, in
// that order, once; it returns the store's Close error.
func (e *env) stop() error {
	e.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if e.srv != nil {
			if err := e.srv.Shutdown(ctx); err != nil && !e.shutdownErrOK {
				e.t.Errorf("smtp shutdown: %v", err)
			}
		}
		if err := e.disp.Shutdown(ctx); err != nil {
			e.t.Errorf("delivery shutdown: %v", err)
		}
		if err := e.db.Close(); err != nil {
			e.stopErr = err
		}
	})
	return e.stopErr
}

// messages returns the inbox's stored messages, newest first.
func (e *env) messages(mailbox string) []store.Message {
	e.t.Helper()
	msgs, _, err := e.db.ListMessages(e.inboxes[mailbox].ID, store.Page{Limit: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	return msgs
}

// events returns the inbox's stored events, newest first.
func (e *env) events(mailbox string) []store.EventSummary {
	e.t.Helper()
	evts, _, err := e.db.ListEvents(e.account.ID, store.EventFilter{InboxID: e.inboxes[mailbox].ID}, store.Page{Limit: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	return evts
}

// only returns the inbox's single message, failing otherwise.
func (e *env) only(mailbox string) store.Message {
	e.t.Helper()
	msgs := e.messages(mailbox)
	if len(msgs) != 1 {
		e.t.Fatalf("%s has %d messages, want 1", mailbox, len(msgs))
	}
	return msgs[0]
}

// metric returns the value of one metric line ("name{labels}") or -1.
func (e *env) metric(name string) float64 {
	var buf bytes.Buffer
	e.set.WritePrometheus(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

func (e *env) rejected(reason string) float64 {
	return e.metric(`mailwire_smtp_rejected_total{reason="` + reason + `"}`)
}

// client is a raw SMTP client over one TCP connection: it writes what it
// is told and reads replies, so tests can send what net/smtp would not.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	return dialFrom(t, "", addr)
}

// dialFrom connects from the local IP from ("" = any).
func dialFrom(t testing.TB, from, addr string) *client {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

// hello dials, reads the greeting and says EHLO.
func hello(t testing.TB, addr string) *client {
	t.Helper()
	c := dial(t, addr)
	c.expect("220 ")
	c.cmd("EHLO client.test", "250 ")
	return c
}

func (c *client) close() { _ = c.conn.Close() }

// send writes the lines, each followed by CRLF, in one write.
func (c *client) send(lines ...string) {
	c.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	c.write(b.String())
}

func (c *client) write(s string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns it whole, lines
// joined by "\n".
func (c *client) reply() (string, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n"), nil
		}
	}
}

// expect reads a reply whose last line starts with prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	r, err := c.reply()
	if err != nil {
		c.t.Fatalf("reading reply (want %q): %v (got %q)", prefix, err, r)
	}
	last := r[strings.LastIndexByte(r, '\n')+1:]
	if !strings.HasPrefix(last, prefix) {
		c.t.Fatalf("reply %q, want %q", r, prefix)
	}
	return r
}

// cmd sends one command and expects a reply starting with prefix.
func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	c.send(line)
	return c.expect(prefix)
}

// expectClosed reads until the server closes the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 4096)
	for {
		_, err := c.r.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatal("connection still open")
			}
			return
		}
	}
}

// data sends DATA, the dot-stuffed message and the end marker, and
// returns the final reply (after checking the 354).
func (c *client) data(msg string, prefix string) string {
	c.t.Helper()
	c.cmd("DATA", "354 ")
	c.write(dotStuff(msg))
	return c.expect(prefix)
}

// dotStuff turns msg into DATA's wire form, end marker included.
func dotStuff(msg string) string {
	var b strings.Builder
	if !strings.HasSuffix(msg, "\r\n") {
		msg += "\r\n"
	}
	for _, line := range strings.SplitAfter(msg, "\r\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteByte('.')
		}
		b.WriteString(line)
	}
	b.WriteString(".\r\n")
	return b.String()
}

// message builds a small RFC 5322 message.
func message(subject, body string, headers ...string) string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.com>\r\nTo: agent@localhost\r\nSubject: " + subject + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n" + body + "\r\n")
	return b.String()
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
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
