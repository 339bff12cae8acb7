package ws

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/internal/leakcheck"
	"github.com/mailwire/mailwire/store"
)

func TestMain(m *testing.M) {
	logging.SetLevel(logging.LevelNone) // nbio's engine banners
	leakcheck.Main(m)
}

// gatedBackend serves one account with no stored events except that
// every last_event_id is known; Replay blocks until the test opens the
// gate, so a subscribe holds live frames as long as the test wants.
// Timing is the only thing it stands in for: the end-to-end tests run the
// real store and dispatcher behind the same interface.
type gatedBackend struct {
	entered chan struct{}
	gate    chan struct{}
}

func (b *gatedBackend) UnownedInboxes(string, []string) ([]string, error) { return nil, nil }
func (b *gatedBackend) EventKnown(string, string) (bool, error)           { return true, nil }
func (b *gatedBackend) Replay(string, string, int, func(string, string) bool) ([]store.StoredEvent, string, error) {
	b.entered <- struct{}{}
	<-b.gate
	return nil, "", nil
}
func (b *gatedBackend) Ack(string, string) error           { return nil }
func (b *gatedBackend) Replayed(string, string, time.Time) {}
func (b *gatedBackend) InFlight(string) bool               { return false }
func (b *gatedBackend) KeyValid(string) (bool, error)      { return true, nil }

// startHub serves a Hub on a real nbhttp engine on 127.0.0.1; every
// upgrade is authenticated as account "acc".
func startHub(t *testing.T, b Backend) (*Hub, string) {
	t.Helper()
	return startHubWith(t, Config{}, b)
}

func startHubWith(t *testing.T, cfg Config, b Backend) (*Hub, string) {
	t.Helper()
	h := New(cfg, b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nb := nbhttp.NewEngine(nbhttp.Config{Network: "tcp", Addrs: []string{ln.Addr().String()},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, problem := CheckHandshake(r)
			if problem != "" {
				http.Error(w, problem, http.StatusBadRequest)
				return
			}
			_ = h.Upgrade(w, r, key, Auth{AccountID: "acc", KeyID: "key"})
		})})
	nb.Listen = func(string, string) (net.Listener, error) { return ln, nil }
	nb.Engine.OnWrittenSize(func(c *nbio.Conn, _ []byte, n int) { OnWritten(c, n) })
	// As engine.Server does: order the accept goroutine's setup of a
	// connection before its first read, visibly to the race detector.
	var handoff atomic.Uint64
	nb.Engine.OnOpen(func(*nbio.Conn) { handoff.Add(1) })
	nb.Engine.OnData(func(c *nbio.Conn, data []byte) { handoff.Load(); c.DataHandler()(c, data) })
	if err := nb.Start(); err != nil {
		t.Fatal(err)
	}
	h.Start()
	t.Cleanup(func() {
		h.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.WaitEmpty(ctx)
		h.Stop()
		_ = nb.Shutdown(ctx)
	})
	return h, "ws://" + ln.Addr().String() + "/v1/ws"
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func subscribed(t *testing.T, c *websocket.Conn, frame string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m map[string]any
	if err := c.ReadJSON(&m); err != nil || m["type"] != "subscribed" {
		t.Fatalf("got %v %v, want subscribed", m, err)
	}
}

var testEvent = &store.Event{ID: "evt_01M8C9RB9X5V865CKTKNCS7WF4", AccountID: "acc", InboxID: "inb_01M8C9RB9X5V865CKTKNCS7WF4",
	Type: store.EventMessageReceived, Head: []byte(`{"event":"message.received","event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF4"`),
	Tail: []byte(`,"inbox_id":"inb_01M8C9RB9X5V865CKTKNCS7WF4","message":{}}`)}

// results collects the done callbacks of pushes.
type results struct {
	mu  sync.Mutex
	got []delivery.PushResult
	ch  chan struct{}
}

func newResults() *results { return &results{ch: make(chan struct{}, 10)} }

func (r *results) done(res delivery.PushResult) {
	r.mu.Lock()
	r.got = append(r.got, res)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *results) wait(t *testing.T) delivery.PushResult {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the push's result never came")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != 1 {
		t.Fatalf("done called %d times", len(r.got))
	}
	return r.got[0]
}

// PROTOCOL.md §6: an attempt is decided by what the push wrote. A frame
// held while a subscribe replays used to count as written even when the
// connection closed before the hold ended (the webhook was then never
// tried); now the push reports later, and the close resolves it as not
// written.
func TestHeldFrameOfAConnectionThatClosesIsNotWritten(t *testing.T) {
	b := &gatedBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h, url := startHub(t, b)
	c := dial(t, url)
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","last_event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF3"}`)); err != nil {
		t.Fatal(err)
	}
	<-b.entered // the subscribe is replaying: live frames are held

	r := newResults()
	res, later := h.Push(testEvent, 1, time.Now(), r.done)
	if !later || res.Matched != 1 || res.Written != 0 {
		t.Fatalf("push during the hold: %+v later=%v, want later with 1 matched", res, later)
	}
	// The client closes (a close frame) before the hold ends: the held
	// frame is resolved at once, as not written.
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
	got := r.wait(t)
	close(b.gate)
	if got.Matched != 1 || got.Written != 0 {
		t.Fatalf("result %+v, want 1 matched and 0 written", got)
	}
}

// The same when the socket just drops: nbio reports the close after the
// subscribe's job (jobs run in order), and the held frame, written to a
// socket that is gone, is resolved as not written when the hold ends.
func TestHeldFrameOfADroppedSocketIsNotWritten(t *testing.T) {
	b := &gatedBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h, url := startHub(t, b)
	c := dial(t, url)
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","last_event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF3"}`)); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	r := newResults()
	if _, later := h.Push(testEvent, 1, time.Now(), r.done); !later {
		t.Fatal("push during the hold was decided at once")
	}
	_ = c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !socketGone(h) { // the poller saw the EOF
		if time.Now().After(deadline) {
			t.Fatal("the server never saw the socket close")
		}
		time.Sleep(time.Millisecond)
	}
	close(b.gate)
	if got := r.wait(t); got.Matched != 1 || got.Written != 0 {
		t.Fatalf("result %+v, want 1 matched and 0 written", got)
	}
}

func socketGone(h *Hub) bool {
	gone := true
	h.each(func(c *conn) {
		if closed, _ := c.nbc.IsClosed(); !closed {
			gone = false
		}
	})
	return gone
}

func TestHeldFrameIsWrittenWhenTheHoldEnds(t *testing.T) {
	b := &gatedBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h, url := startHub(t, b)
	c := dial(t, url)
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","last_event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF3","ack":true}`)); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	r := newResults()
	if _, later := h.Push(testEvent, 1, time.Now(), r.done); !later {
		t.Fatal("push during the hold was decided at once")
	}
	close(b.gate)
	if got := r.wait(t); got.Matched != 1 || got.Written != 1 || got.Acking != 1 {
		t.Fatalf("result %+v, want 1 matched, written, acking", got)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for { // subscribed, then the held event
		var m map[string]any
		if err := c.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		if m["event_id"] == testEvent.ID {
			break
		}
	}
}

// One push call answers what it matched and wrote: with one connection
// holding and one not, the write to the second decides at once.
func TestPushDecidesAtOnceWhenAFrameWasWritten(t *testing.T) {
	b := &gatedBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	h, url := startHub(t, b)
	plain := dial(t, url)
	subscribed(t, plain, `{"type":"subscribe"}`)
	holding := dial(t, url)
	if err := holding.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","last_event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF3"}`)); err != nil {
		t.Fatal(err)
	}
	<-b.entered
	r := newResults()
	res, later := h.Push(testEvent, 1, time.Now(), r.done)
	close(b.gate)
	if later || res.Matched != 2 || res.Written != 1 || res.Acking != 0 {
		t.Fatalf("push: %+v later=%v, want decided with 2 matched, 1 written", res, later)
	}
	if res, later := h.Push(&store.Event{ID: testEvent.ID, AccountID: "other", InboxID: testEvent.InboxID, Type: testEvent.Type}, 1, time.Now(), r.done); later || res.Matched != 0 {
		t.Fatalf("push to an account without connections: %+v later=%v", res, later)
	}
	select {
	case <-r.ch:
		t.Fatal("done was called for a push that was decided at once")
	default:
	}
}

// A connection closed for a reason (a revoked key, here) gets its error
// frame and then the close, with nothing between: no event pushed while
// it is being closed may follow the error. (The error and the close
// used to be two steps; pushes in between were written, so a revoked
// key's connection kept receiving events after it was told why it is
// being closed.)
func TestNothingBetweenTheErrorFrameAndTheClose(t *testing.T) {
	b := &gatedBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	close(b.gate)
	h, url := startHubWith(t, Config{MaxPending: 256 << 20}, b)
	for round := 0; round < 12; round++ {
		c := dial(t, url)
		subscribed(t, c, `{"type":"subscribe"}`)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					ev := *testEvent
					h.Push(&ev, 1, time.Now(), func(delivery.PushResult) {})
				}
			}()
		}
		// Revoke once events are flowing.
		var events int
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for events < 50 {
			var m map[string]any
			if err := c.ReadJSON(&m); err != nil {
				t.Fatal(err)
			}
			events++
		}
		if n := h.KeyRevoked("key"); n != 1 {
			t.Fatalf("revoked %d connections", n)
		}
		sawError := false
		for {
			var m map[string]any
			err := c.ReadJSON(&m)
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != closeUnauthorized || !sawError {
					t.Fatalf("round %d: got %v (error frame seen: %v), want the error frame then close 4001", round, err, sawError)
				}
				break
			}
			switch {
			case m["type"] == "error":
				sawError = true
			case sawError:
				t.Fatalf("round %d: a frame after the error frame, before the close: %v", round, m)
			}
		}
		close(stop)
		wg.Wait()
	}
}
