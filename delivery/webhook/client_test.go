package webhook

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	testTimeout = 300 * time.Millisecond
	// timeMargin is what an attempt may overrun its Timeout by: scheduling
	// under -race on a busy 2-core machine.
	timeMargin = 500 * time.Millisecond
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Timeout == 0 {
		cfg.Timeout = testTimeout
	}
	if cfg.IdleConnTimeout == 0 {
		cfg.IdleConnTimeout = time.Second // fasthttp's cleaners exit soon after Close
	}
	c := NewClient(cfg)
	t.Cleanup(c.Close)
	return c
}

func testBody() []byte {
	return []byte(`{"event":"message.received","event_id":"evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P","attempt":1}`)
}

func post(c *Client, url string) Result {
	body := testBody()
	return c.Post(url, SignHeaders(testSecret, "evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P", time.Now().Unix(), body), body)
}

// wantErr checks a failed attempt: its status and that its message contains want.
func wantErr(t *testing.T, res Result, status int, want string) {
	t.Helper()
	if res.Err == nil {
		t.Fatalf("attempt succeeded (status %d), want error %q", res.Status, want)
	}
	if res.Status != status {
		t.Fatalf("status %d, want %d (err %q)", res.Status, status, res.Err)
	}
	if !strings.Contains(res.Err.Error(), want) {
		t.Fatalf("error %q does not contain %q", res.Err, want)
	}
}

// wantBounded checks that a failed attempt took about Timeout, not longer.
func wantBounded(t *testing.T, res Result, timeout time.Duration) {
	t.Helper()
	if res.Duration < timeout-20*time.Millisecond || res.Duration > timeout+timeMargin {
		t.Fatalf("attempt took %v, want %v (+%v at most)", res.Duration, timeout, timeMargin)
	}
}

type received struct {
	header http.Header
	body   []byte
	method string
	uri    string
}

func TestPostSuccessSignedHeaders(t *testing.T) {
	for _, status := range []int{200, 201, 202, 204} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			got := make(chan received, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				got <- received{header: r.Header.Clone(), body: body, method: r.Method, uri: r.RequestURI}
				w.WriteHeader(status)
				if status != 204 {
					io.WriteString(w, `{"ok":true}`)
				}
			}))
			defer srv.Close()

			c := newTestClient(t, Config{AllowPrivate: true})
			body := testBody()
			ts := time.Now().Unix()
			res := c.Post(srv.URL+"/hooks/in?x=1", SignHeaders(testSecret, "evt_A", ts, body), body)
			if res.Err != nil || res.Status != status {
				t.Fatalf("result %+v, want success %d", res, status)
			}
			if status == 204 && res.Body != nil || status != 204 && string(res.Body) != `{"ok":true}` {
				t.Fatalf("body %q", res.Body)
			}
			if res.Duration <= 0 || res.Duration > time.Second {
				t.Fatalf("duration %v", res.Duration)
			}
			r := <-got
			if r.method != "POST" || r.uri != "/hooks/in?x=1" || string(r.body) != string(body) {
				t.Fatalf("received %s %s %q", r.method, r.uri, r.body)
			}
			tss := strconv.FormatInt(ts, 10)
			h := r.header
			for k, v := range map[string]string{
				"Content-Type": "application/json", "User-Agent": "mailwire-webhook/1",
				"X-Event-Id": "evt_A", "X-Timestamp": tss, "Webhook-Id": "evt_A", "Webhook-Timestamp": tss,
			} {
				if h.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, h.Get(k), v)
				}
			}
			if !verifyXSignature(testSecret, h.Get("X-Timestamp"), r.body, h.Get("X-Signature")) {
				t.Errorf("X-Signature %q does not verify", h.Get("X-Signature"))
			}
			if !verifyWebhookSignature(testSecret, h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), r.body, h.Get("Webhook-Signature")) {
				t.Errorf("webhook-signature %q does not verify", h.Get("Webhook-Signature"))
			}
		})
	}
}

func TestPostUserAgentAndPathAsWritten(t *testing.T) {
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- received{header: r.Header.Clone(), uri: r.RequestURI}
	}))
	defer srv.Close()
	c := newTestClient(t, Config{AllowPrivate: true, UserAgent: "acme/2"})
	res := post(c, srv.URL+"/a%2Fb//c")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := <-got
	if ua := r.header.Get("User-Agent"); ua != "acme/2" {
		t.Fatalf("User-Agent %q", ua)
	}
	if r.uri != "/a%2Fb//c" {
		t.Fatalf("path normalised to %q", r.uri)
	}
}

func TestPostRedirectNotFollowed(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { targetHits.Add(1) }))
	defer target.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+"/moved", status)
		}))
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, redirect.URL+"/hook")
		redirect.Close()
		wantErr(t, res, status, fmt.Sprintf("http %d (redirect to %s/moved not followed)", status, target.URL))
	}
	if n := targetHits.Load(); n != 0 {
		t.Fatalf("redirect target hit %d times", n)
	}
}

func TestPostErrorStatuses(t *testing.T) {
	for _, status := range []int{400, 401, 404, 410, 429, 500, 502, 503} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			io.WriteString(w, "nope "+strings.Repeat("x", 2000))
		}))
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, srv.URL)
		srv.Close()
		wantErr(t, res, status, "http "+strconv.Itoa(status))
		if res.Err.Error() != "http "+strconv.Itoa(status) {
			t.Fatalf("error %q, want exactly %q", res.Err, "http "+strconv.Itoa(status))
		}
		if len(res.Body) != 1024 || !strings.HasPrefix(string(res.Body), "nope x") {
			t.Fatalf("body kept: %d bytes %q...", len(res.Body), res.Body[:min(10, len(res.Body))])
		}
	}
}

// respondAfterRequest reads one request from c, then runs respond.
func respondAfterRequest(respond func(s *rawServer, c net.Conn, br *bufio.Reader)) func(*rawServer, net.Conn) {
	return func(s *rawServer, c net.Conn) {
		br := bufio.NewReader(c)
		if _, _, err := readRequest(br); err != nil {
			return
		}
		respond(s, c, br)
	}
}

func TestPostHangingEndpointTimesOut(t *testing.T) {
	srv := newRawServer(t, respondAfterRequest(func(s *rawServer, c net.Conn, _ *bufio.Reader) {
		<-s.stop // accept, read, never answer
	}))
	c := newTestClient(t, Config{AllowPrivate: true})
	res := post(c, srv.url())
	wantErr(t, res, 0, "timeout after 300ms")
	wantBounded(t, res, testTimeout)
	if res.Err.Error() != "timeout after 300ms" {
		t.Fatalf("error %q", res.Err)
	}
}

func TestPostSlowDripHeadersTimesOut(t *testing.T) {
	// Headers trickled a byte every 10 ms: each read succeeds, so only a
	// deadline for the whole attempt ends it.
	srv := newRawServer(t, respondAfterRequest(func(s *rawServer, c net.Conn, _ *bufio.Reader) {
		s.drip(c, "HTTP/1.1 200 OK\r\n"+strings.Repeat("X-Drip: 1\r\n", 1000), 10*time.Millisecond)
	}))
	c := newTestClient(t, Config{AllowPrivate: true})
	res := post(c, srv.url())
	wantErr(t, res, 0, "timeout after 300ms")
	wantBounded(t, res, testTimeout)
}

func TestPostSlowDripBodyTimesOut(t *testing.T) {
	for _, framing := range []string{"Content-Length: 100000\r\n", "Transfer-Encoding: chunked\r\n"} {
		srv := newRawServer(t, respondAfterRequest(func(s *rawServer, c net.Conn, _ *bufio.Reader) {
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n"+framing+"\r\n"); err != nil {
				return
			}
			body := strings.Repeat("a", 100000)
			if strings.HasPrefix(framing, "Transfer") {
				body = strings.Repeat("1\r\na\r\n", 100000)
			}
			s.drip(c, body, 10*time.Millisecond)
		}))
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, srv.url())
		wantErr(t, res, 200, "cannot read response body: timeout after 300ms")
		wantBounded(t, res, testTimeout)
		if len(res.Body) == 0 || len(res.Body) > 1024 {
			t.Fatalf("kept %d body bytes", len(res.Body))
		}
	}
}

// bigBodyServer answers every request with status and a body of size bytes
// (chunked and endless when size < 0), writing 64 KiB at a time until the
// client goes away. It reports on sent how many body bytes it wrote.
func bigBodyServer(t *testing.T, status, size int) (*rawServer, chan int64) {
	sent := make(chan int64, 16)
	srv := newRawServer(t, respondAfterRequest(func(s *rawServer, c net.Conn, _ *bufio.Reader) {
		var n int64
		defer func() { sent <- n }()
		head := fmt.Sprintf("HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n", status, size)
		if size < 0 {
			head = fmt.Sprintf("HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n", status)
		}
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		if size < 0 {
			chunk = append([]byte(fmt.Sprintf("%x\r\n", len(chunk))), append(chunk, "\r\n"...)...)
		}
		for size < 0 || n < int64(size) {
			w, err := c.Write(chunk)
			n += int64(w)
			if err != nil {
				return
			}
		}
	}))
	return srv, sent
}

func TestPostHugeResponseBodyIsCutOff(t *testing.T) {
	const huge = 50 << 20
	cases := []struct {
		name   string
		status int
		size   int
	}{
		{"200 with 50 MiB", 200, huge},
		{"200 endless chunked", 200, -1},
		{"500 with 50 MiB", 500, huge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, sent := bigBodyServer(t, tc.status, tc.size)
			c := newTestClient(t, Config{AllowPrivate: true, Timeout: 5 * time.Second})
			res := post(c, srv.url())
			if tc.status == 200 && res.Err != nil {
				t.Fatalf("huge 2xx body failed the attempt: %v", res.Err)
			}
			if tc.status != 200 {
				wantErr(t, res, tc.status, "http 500")
			}
			if res.Status != tc.status || len(res.Body) != 1024 {
				t.Fatalf("status %d, kept %d bytes", res.Status, len(res.Body))
			}
			if res.Duration > 2*time.Second {
				t.Fatalf("attempt took %v: the body was not cut off", res.Duration)
			}
			// The client closed the connection after 64 KiB: the server's
			// writes fail once the socket buffers are full, long before it
			// has sent what it meant to.
			var n int64
			select {
			case n = <-sent:
			case <-time.After(5 * time.Second):
				t.Fatal("server still writing 5s after the client stopped reading")
			}
			if n > 24<<20 {
				t.Fatalf("server managed to send %d bytes of a 50 MiB or endless body", n)
			}
			t.Logf("server sent %d KiB before the client closed", n>>10)
			if got := srv.accepted.Load(); got != 1 {
				t.Fatalf("%d connections", got)
			}
		})
	}
}

func TestPostKeepAliveAndBodyLimitClosesConnection(t *testing.T) {
	// Bodies within MaxResponseBody are drained and the connection reused;
	// a longer one is cut off and its connection closed, not reused.
	size := atomic.Int64{}
	srv := newRawServer(t, func(s *rawServer, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			n := size.Load()
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("b", int(n))); err != nil {
				return
			}
		}
	})
	c := newTestClient(t, Config{AllowPrivate: true, MaxResponseBody: 4096, Timeout: 2 * time.Second})
	size.Store(4096)
	for i := range 3 {
		if res := post(c, srv.url()); res.Err != nil || len(res.Body) != 1024 {
			t.Fatalf("post %d: %+v", i, res)
		}
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for 3 posts with small bodies, want 1 (keep-alive)", n)
	}
	size.Store(4097)
	// The first over-limit body arrives on the pooled connection and closes
	// it; each later one needs a new connection.
	for i := range 3 {
		if res := post(c, srv.url()); res.Err != nil {
			t.Fatalf("post %d: %v", i, res.Err)
		}
	}
	if n := srv.accepted.Load(); n != 3 {
		t.Fatalf("%d connections after 3 over-limit bodies, want 3: each closes its connection", n)
	}
}

func TestIdleConnTimeoutClosesIdleConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	c := newTestClient(t, Config{AllowPrivate: true, IdleConnTimeout: 200 * time.Millisecond})
	if res := post(c, srv.URL); res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := c.hc.IdleConnsCount(); n != 1 {
		t.Fatalf("%d idle connections after a post, want 1", n)
	}
	// fasthttp's cleaner wakes at least once a second.
	waitFor(t, 3*time.Second, "the idle connection to be closed", func() bool { return c.hc.IdleConnsCount() == 0 })
}

func TestPostConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newTestClient(t, Config{AllowPrivate: true})
	res := post(c, "http://"+addr+"/hook")
	wantErr(t, res, 0, "connection refused")
	if !errors.Is(res.Err, syscall.ECONNREFUSED) {
		t.Fatalf("error %v does not unwrap to ECONNREFUSED", res.Err)
	}
}

func resetConn(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0) // close sends RST
	c.Close()
}

func TestPostConnectionReset(t *testing.T) {
	t.Run("before the response", func(t *testing.T) {
		srv := newRawServer(t, respondAfterRequest(func(_ *rawServer, c net.Conn, _ *bufio.Reader) { resetConn(c) }))
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, srv.url())
		wantErr(t, res, 0, "connection")
		if res.Duration > testTimeout {
			t.Fatalf("reset took %v to notice", res.Duration)
		}
		t.Logf("error: %v", res.Err)
	})
	t.Run("on accept", func(t *testing.T) {
		srv := newRawServer(t, func(_ *rawServer, c net.Conn) { resetConn(c) })
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, srv.url())
		wantErr(t, res, 0, "connection")
		t.Logf("error: %v", res.Err)
	})
	t.Run("in the body", func(t *testing.T) {
		srv := newRawServer(t, respondAfterRequest(func(_ *rawServer, c net.Conn, _ *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
			resetConn(c)
		}))
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, srv.url())
		wantErr(t, res, 200, "cannot read response body: connection")
		t.Logf("error: %v", res.Err)
	})
	t.Run("closed mid-body", func(t *testing.T) {
		srv := newRawServer(t, respondAfterRequest(func(_ *rawServer, c net.Conn, _ *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
		}))
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, srv.url())
		wantErr(t, res, 200, "cannot read response body: connection closed before the end of the response")
	})
}

func TestPostResponseHeadersTooLarge(t *testing.T) {
	srv := newRawServer(t, respondAfterRequest(func(_ *rawServer, c net.Conn, _ *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("h", 10<<10)+"\r\nContent-Length: 0\r\n\r\n")
	}))
	c := newTestClient(t, Config{AllowPrivate: true})
	wantErr(t, post(c, srv.url()), 0, "response headers larger than 8 KiB")
}

func TestPostIgnoresProxyEnvironment(t *testing.T) {
	proxy := newRawServer(t, func(s *rawServer, c net.Conn) {
		io.WriteString(c, "HTTP/1.1 502 Proxy\r\nContent-Length: 0\r\n\r\n")
	})
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		t.Setenv(k, "http://"+proxy.addr)
	}
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer target.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(target.URL, "http://"))
	// A name, not a loopback literal: clients that honour proxy variables
	// bypass the proxy for loopback, but not for this.
	c := newTestClient(t, Config{AllowPrivate: true, Resolver: staticResolver(map[string][]string{"hooks.example.com": {"127.0.0.1"}})})
	if res := post(c, "http://hooks.example.com:"+port+"/hook"); res.Err != nil {
		t.Fatal(res.Err)
	}
	if hits.Load() != 1 {
		t.Fatalf("target hit %d times", hits.Load())
	}
	if n := proxy.accepted.Load(); n != 0 {
		t.Fatalf("proxy from the environment received %d connections", n)
	}
}

func TestPostSSRFGuard(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))

	// Literal loopback: refused before any connection.
	c := newTestClient(t, Config{})
	res := post(c, srv.URL+"/hook")
	wantErr(t, res, 0, "address 127.0.0.1 is not allowed (loopback)")
	if !errors.Is(res.Err, ErrForbiddenAddress) {
		t.Fatalf("error %v does not match ErrForbiddenAddress", res.Err)
	}

	// A name that resolves to 127.0.0.1 when the connection is made.
	r := staticResolver(map[string][]string{"hooks.example.com": {"127.0.0.1"}})
	c = newTestClient(t, Config{Resolver: r})
	res = post(c, "http://hooks.example.com:"+port+"/hook")
	wantErr(t, res, 0, "address 127.0.0.1 of host hooks.example.com is not allowed (loopback)")

	// localhost, an odd spelling, and a form error.
	wantErr(t, post(c, "http://localhost:"+port+"/"), 0, "host localhost is not allowed")
	wantErr(t, post(c, "http://2130706433:"+port+"/"), 0, "ambiguous IPv4 literal")
	wantErr(t, post(c, "ftp://hooks.example.com/"), 0, `scheme "ftp" is not allowed`)
	wantErr(t, post(c, "http://u:p@hooks.example.com/"), 0, "credentials")
	wantErr(t, post(c, "http://nowhere.example.com:"+port+"/"), 0, "cannot resolve nowhere.example.com: no such host")
	if hits.Load() != 0 {
		t.Fatalf("guarded receiver hit %d times", hits.Load())
	}

	// With AllowPrivate the same name connects.
	c = newTestClient(t, Config{AllowPrivate: true, Resolver: r})
	if res := post(c, "http://hooks.example.com:"+port+"/hook"); res.Err != nil {
		t.Fatal(res.Err)
	}
	if hits.Load() != 1 {
		t.Fatalf("receiver hit %d times", hits.Load())
	}
}

func TestPostMaxConnsPerHost(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer srv.Close()
	defer close(release)

	c := newTestClient(t, Config{AllowPrivate: true, MaxConnsPerHost: 1, MaxConnWait: 100 * time.Millisecond, Timeout: 5 * time.Second})
	first := make(chan Result, 1)
	go func() { first <- post(c, srv.URL) }()
	<-entered // the only connection is busy

	res := post(c, srv.URL)
	wantErr(t, res, 0, "no free connection to the host within 100ms")
	if res.Duration > 100*time.Millisecond+timeMargin {
		t.Fatalf("waited %v for a connection, want about 100ms", res.Duration)
	}

	// When MaxConnWait is longer than what is left of Timeout, the attempt's
	// deadline wins.
	c2 := newTestClient(t, Config{AllowPrivate: true, MaxConnsPerHost: 1, MaxConnWait: time.Hour})
	go func() { first <- post(c2, srv.URL) }()
	<-entered
	res = post(c2, srv.URL)
	wantErr(t, res, 0, "timeout after 300ms")
	wantBounded(t, res, testTimeout)

	release <- struct{}{}
	release <- struct{}{}
	for range 2 {
		<-first
	}
}

func TestPostTLS(t *testing.T) {
	t.Run("untrusted certificate", func(t *testing.T) {
		var hits atomic.Int32
		srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
		defer srv.Close()
		// A handshake under -race on a busy machine can take longer than 300ms.
		c := newTestClient(t, Config{AllowPrivate: true, Timeout: 10 * time.Second})
		res := post(c, srv.URL+"/hook")
		wantErr(t, res, 0, "certificate")
		t.Logf("error: %v", res.Err)
		if hits.Load() != 0 {
			t.Fatal("request delivered over an unverified TLS connection")
		}
	})
	t.Run("handshake never answered", func(t *testing.T) {
		srv := newRawServer(t, func(s *rawServer, c net.Conn) { <-s.stop })
		c := newTestClient(t, Config{AllowPrivate: true})
		res := post(c, "https://"+srv.addr+"/hook")
		wantErr(t, res, 0, "timeout after 300ms")
		wantBounded(t, res, testTimeout)
	})
}

func TestPostInvalidURLNoNetwork(t *testing.T) {
	c := newTestClient(t, Config{AllowPrivate: true})
	for _, u := range []string{"ftp://127.0.0.1/", "file:///etc/passwd", "http://u:p@127.0.0.1/", "not a url", ""} {
		res := post(c, u)
		if !errors.Is(res.Err, ErrInvalidURL) || res.Status != 0 {
			t.Fatalf("%q: %+v, want ErrInvalidURL", u, res)
		}
	}
}

func TestPostConcurrent(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	c := newTestClient(t, Config{AllowPrivate: true, MaxConnsPerHost: 4, Timeout: 5 * time.Second})
	errs := make(chan error, 64)
	for range 64 {
		go func() { errs <- post(c, srv.URL).Err }()
	}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 64 {
		t.Fatalf("%d hits", hits.Load())
	}
}

func BenchmarkPost(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler:     func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusNoContent) },
		ReadTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Shutdown(); <-done }()

	c := NewClient(Config{AllowPrivate: true, Resolver: staticResolver(map[string][]string{"bench.example.com": {"127.0.0.1"}})})
	defer c.Close()
	url := "http://" + ln.Addr().String() + "/hook"
	body := []byte(strings.Repeat("a", 2048))
	b.SetParallelism(16) // 16 goroutines per CPU: receivers are remote and slow in real life
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h := SignHeaders(testSecret, "evt_bench", time.Now().Unix(), body)
			if res := c.Post(url, h, body); res.Err != nil {
				b.Error(res.Err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
