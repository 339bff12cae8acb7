package engine_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// RELIABILITY.md invariant 11 (RFC 9112 §6.3, RFC 6455 §4.1): every
// request whose framing a proxy could read differently is answered 400
// (501 for an unknown transfer coding) and its connection closed; a
// request smuggled in a body never runs. Before, nbhttp took the first of
// two Content-Lengths (the smuggled request got its own answer), let
// chunked win over Content-Length, read "Content-Length : 5" and folded
// lines as fields, upgraded HTTP/1.0 requests, and closed on parse errors
// without an answer.
func TestStrictHTTPFraming(t *testing.T) {
	s := startAPI(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	body := `{"from":"a@b.c","subject":"x","text":"y"}`
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	post := func(headers string, b string) string {
		return "POST /v1/inboxes/" + in + "/inbound HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + a.Key +
			"\r\nContent-Type: application/json\r\n" + headers + "\r\n" + b
	}
	ws := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	f := func(name, raw string, want int) {
		t.Helper()
		c := dialRaw(t, s)
		if _, err := c.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		resp, got := c.readResponse(t, "POST")
		if resp.StatusCode != want || (want >= 400 && !strings.Contains(string(got), `"error":"bad_request"`)) {
			t.Fatalf("%s: %d %s, want %d", name, resp.StatusCode, got, want)
		}
		if want >= 400 {
			// The connection is closed: nothing after the refusal is read,
			// so a smuggled request never gets an answer.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if rest, err := io.ReadAll(c.br); err != nil || len(rest) > 0 {
				t.Fatalf("%s: after the refusal: %q %v", name, rest, err)
			}
		}
	}
	cl := func(n int) string { return fmt.Sprintf("Content-Length: %d\r\n", n) }
	f("two different Content-Length", post(cl(len(body))+cl(len(body)+len(smuggled)), body+smuggled), 400)
	f("Content-Length then chunked", post(cl(len(body))+"Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400)
	f("chunked then Content-Length", post("Transfer-Encoding: chunked\r\n"+cl(5), "0\r\n\r\n"), 400)
	f("a space before the colon", post("Content-Length : "+fmt.Sprint(len(body))+"\r\n", body), 400)
	f("a tab before the colon", post("Content-Length\t: "+fmt.Sprint(len(body))+"\r\n", body), 400)
	f("a space inside a name", post("X Foo: 1\r\n"+cl(len(body)), body), 400)
	f("obsolete line folding", post("X-Foo: 1\r\n  Content-Length: 3\r\n"+cl(len(body)), body), 400)
	f("a signed Content-Length", post("Content-Length: +"+fmt.Sprint(len(body))+"\r\n", body), 400)
	f("Content-Length: N, N", post(fmt.Sprintf("Content-Length: %d, %d\r\n", len(body), len(body)), body), 400)
	f("gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501)
	f("chunked, gzip", post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400)
	f("bare LF", strings.ReplaceAll("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n", "\n"), 400)
	f("no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400)
	f("two Hosts", "GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400)
	f("an HTTP/1.0 upgrade", "GET /v1/ws?token="+a.Key+" HTTP/1.0\r\nHost: x\r\n"+ws+"\r\n", 400)

	// What is fine stays fine: one Content-Length given twice identically,
	// chunked alone, an HTTP/1.1 upgrade.
	f("identical Content-Length twice", post(cl(len(body))+cl(len(body)), body), http.StatusAccepted)
	f("chunked alone", post("Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)), http.StatusAccepted)
	f("an HTTP/1.1 upgrade", "GET /v1/ws?token="+a.Key+" HTTP/1.1\r\nHost: x\r\n"+ws+"\r\n", http.StatusSwitchingProtocols)
}
