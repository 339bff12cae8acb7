package engine

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"
)

// nbio's poller must not wait for a connection's write lock, which a
// writer holds through its write(2): a handler writing its answer (or a
// dispatcher writing a WebSocket frame) whose thread is descheduled in or
// just after the syscall made the one poller goroutine wait on that lock,
// and no socket of the node was read meanwhile (runtime/trace at 1,000
// inbound requests/s: 148 waits in 5 s, up to 79 ms). Here the write lock
// is held (Conn.Lock, as writeOne holds it) while the client sends: the
// poller must still read the bytes and queue the connection's job.
func TestPollerReadsWhileAWriterHoldsTheConnection(t *testing.T) {
	opened := make(chan *nbio.Conn, 1)
	got := make(chan struct{}, 1)
	ran := make(chan struct{}, 1)
	var handoff atomic.Uint64
	g := nbio.NewEngine(nbio.Config{NPoller: 1})
	g.OnOpen(func(c *nbio.Conn) { handoff.Add(1); opened <- c })
	g.OnData(func(c *nbio.Conn, data []byte) {
		handoff.Load()
		select {
		case got <- struct{}{}:
		default:
		}
		c.Execute(func() {
			select {
			case ran <- struct{}{}:
			default:
			}
		})
	})
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Stop()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.AddConn(srv); err != nil {
		t.Fatal(err)
	}
	c := <-opened

	c.Lock() // a writer in its write(2)
	if _, err := client.Write([]byte("ping")); err != nil {
		c.Unlock()
		t.Fatal(err)
	}
	// Without the fix the poller blocks on the lock until Unlock: the
	// bound only keeps a failing run from hanging.
	for _, ch := range []chan struct{}{got, ran} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			c.Unlock()
			t.Fatal("the poller waited for the connection's write lock (no read, or no job queued, while it was held)")
		}
	}
	c.Unlock()
}

// The same for HTTP: a request arriving on a connection whose previous
// answer is still being written must not stop the poller (nbhttp armed
// the write deadline on the poller, and Conn.SetWriteDeadline takes the
// write lock): another connection's request is still answered.
func TestHTTPRequestOnABusyConnectionDoesNotStopThePoller(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan *nbio.Conn, 2)
	nb := nbhttp.NewEngine(nbhttp.Config{Network: "tcp", Addrs: []string{ln.Addr().String()}, NPoller: 1,
		WriteTimeout: time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2")
			_, _ = w.Write([]byte("ok"))
		})})
	nb.Listen = func(string, string) (net.Listener, error) { return ln, nil }
	var handoff atomic.Uint64
	nb.Engine.OnOpen(func(c *nbio.Conn) { handoff.Add(1); opened <- c })
	nb.Engine.OnData(func(c *nbio.Conn, data []byte) { handoff.Load(); c.DataHandler()(c, data) })
	if err := nb.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = nb.Shutdown(ctx)
	}()
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := <-opened
	other, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	<-opened

	const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	c.Lock() // a writer of the busy connection in its write(2)
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			c.Unlock()
		}
	}
	defer unlock()
	if _, err := busy.Write([]byte(get)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the poller reach the busy connection's request first (not an assertion)
	if _, err := other.Write([]byte(get)); err != nil {
		t.Fatal(err)
	}
	// Without the fix the poller waits for the busy connection's lock:
	// the deadline only keeps a failing run from hanging.
	_ = other.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(other), nil)
	if err != nil {
		t.Fatalf("no answer on the other connection while the busy one's write lock was held: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	unlock()
	_ = busy.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(busy), nil); err != nil {
		t.Fatalf("the busy connection's request was lost: %v", err)
	} else {
		resp.Body.Close()
	}
}
