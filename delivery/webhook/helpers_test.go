package webhook

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hmacSHA256 is RFC 2104 HMAC written out, so the tests verify signatures
// with code that shares nothing with Sign (not even crypto/hmac).
func hmacSHA256(key, msg []byte) []byte {
	const blockSize = 64
	if len(key) > blockSize {
		k := sha256.Sum256(key)
		key = k[:]
	}
	ipad := make([]byte, blockSize)
	opad := make([]byte, blockSize)
	copy(ipad, key)
	copy(opad, key)
	for i := range blockSize {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	inner := sha256.Sum256(append(ipad, msg...))
	outer := sha256.Sum256(append(opad, inner[:]...))
	return outer[:]
}

// verifyXSignature checks an X-Signature header the way a receiver would.
func verifyXSignature(secret, ts string, body []byte, sig string) bool {
	want := hex.EncodeToString(hmacSHA256([]byte(secret), append([]byte(ts+"."), body...)))
	return sig == want
}

// verifyWebhookSignature checks a webhook-signature header the way a
// Standard Webhooks library would.
func verifyWebhookSignature(secret, id, ts string, body []byte, sig string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmacSHA256(key, append([]byte(id+"."+ts+"."), body...))
	for s := range strings.FieldsSeq(sig) {
		if s == "v1,"+base64.StdEncoding.EncodeToString(mac) {
			return true
		}
	}
	return false
}

// resolverFunc adapts a function to Resolver.
type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// staticResolver answers from a table and says "no such host" otherwise,
// without touching the network.
func staticResolver(table map[string][]string) resolverFunc {
	return func(_ context.Context, _, host string) ([]netip.Addr, error) {
		ss, ok := table[strings.ToLower(host)]
		if !ok {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		out := make([]netip.Addr, 0, len(ss))
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

// rawServer is a TCP server on 127.0.0.1 whose connections are handled by
// test code byte by byte. Cleanup closes everything and waits for every
// handler.
type rawServer struct {
	ln       net.Listener
	addr     string
	accepted atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

func newRawServer(t *testing.T, handle func(s *rawServer, c net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, addr: ln.Addr().String(), stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(s, c)
			}()
		}
	}()
	t.Cleanup(func() {
		close(s.stop)
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return "http://" + s.addr + "/hook" }

// readRequest reads one HTTP request (headers and body) from c.
func readRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, nil, err
	}
	return req, body, nil
}

// drip writes s one byte every interval until it is written, the peer goes
// away or the server stops. It reports whether all of s was written.
func (s *rawServer) drip(c net.Conn, data string, interval time.Duration) bool {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; i < len(data); i++ {
		select {
		case <-s.stop:
			return false
		case <-t.C:
		}
		if _, err := c.Write([]byte{data[i]}); err != nil {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
