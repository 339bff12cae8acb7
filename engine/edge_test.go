package engine_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// A connection that sends nothing (or never finishes its first request
// head) is closed after the head timeout; one that sent a request stays
// for the idle timeout. (Idle unauthenticated connections used to be kept
// for 60 s, so 1,100 of them locked a 1,024-descriptor server out.)
func TestHTTPConnectionsWithoutARequestAreClosed(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.HTTPHeadTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(s.URL, "http://")
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	trickle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer trickle.Close()
	_, _ = trickle.Write([]byte("GET /healthz HTTP/1.1\r\nHo"))
	used := dialRaw(t, s)
	_, _ = used.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	if resp, _ := used.readResponse(t, "GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	for _, c := range []net.Conn{idle, trickle} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("the server did not close a connection without a request: %v", err)
		}
	}
	// The used one is still served.
	_, _ = used.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	if resp, _ := used.readResponse(t, "GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
}

// --http-max-conns-per-ip: past the cap a connection from the same address
// is reset at accept, counted, and its slot comes back when one closes;
// other addresses are not affected.
func TestHTTPConnectionsPerAddressAreCapped(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.HTTPMaxConnsPerIP = 3 })
	addr := strings.TrimPrefix(s.URL, "http://")
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c := dialRaw(t, s)
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
		if resp, _ := c.readResponse(t, "GET"); resp.StatusCode != 200 {
			t.Fatal(resp.Status)
		}
		held = append(held, c)
	}
	refused := func(from string) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return true
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		b, err := io.ReadAll(c)
		return len(b) == 0 && (err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset"))
	}
	if !refused("127.0.0.1") {
		t.Fatal("a fourth connection from the same address was served")
	}
	if refused("127.0.0.2") {
		t.Fatal("another address was refused")
	}
	held[0].Close()
	testserver.WaitFor(t, 5*time.Second, "the slot to come back", func() bool { return !refused("127.0.0.1") })
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).DialContext}}
	resp, err := other.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	other.CloseIdleConnections()
	if !strings.Contains(string(m), `mailwire_connections_refused_total{reason="per_ip"}`) {
		t.Fatalf("refusal not counted:\n%s", m)
	}
}
