package engine_test

import (
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// clientFrame encodes a client frame: fin, opcode, mask as asked.
func clientFrame(fin bool, rsv byte, op byte, masked bool, payload []byte) []byte {
	b0 := op | rsv<<4
	if fin {
		b0 |= 0x80
	}
	var hdr []byte
	m := byte(0)
	if masked {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		hdr = []byte{b0, m | byte(n)}
	case n <= 0xFFFF:
		hdr = []byte{b0, m | 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = b0, m|127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	if !masked {
		return append(hdr, payload...)
	}
	key := []byte{0x12, 0x34, 0x56, 0x78}
	out := append(hdr, key...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

func writeClientFrame(t *testing.T, c net.Conn, op byte, payload []byte) {
	t.Helper()
	if _, err := c.Write(clientFrame(true, 0, op, true, payload)); err != nil {
		t.Fatal(err)
	}
}

// serverFrame reads one server frame (unmasked).
func serverFrame(t *testing.T, c net.Conn) (op byte, payload []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		t.Fatal("server frames must not be masked")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(c, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(c, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0F, payload
}

// expectRawClose reads frames until a close frame and checks its code.
func expectRawClose(t *testing.T, c net.Conn, code int) {
	t.Helper()
	for i := 0; i < 10; i++ {
		op, p := serverFrame(t, c)
		if op == 0x8 {
			if len(p) < 2 || int(binary.BigEndian.Uint16(p)) != code {
				t.Fatalf("close payload %q, want code %d", p, code)
			}
			return
		}
	}
	t.Fatalf("no close frame")
}

func expectRawText(t *testing.T, c net.Conn, contains string) {
	t.Helper()
	op, p := serverFrame(t, c)
	if op != 0x1 || !strings.Contains(string(p), contains) {
		t.Fatalf("frame op %d %q, want text with %q", op, p, contains)
	}
}

func TestWSProtocolEdges(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.WS.MaxFrame = 4096 })
	acc := s.NewAccount("a")
	ping := []byte(`{"type":"ping"}`)

	violation := func(name string, frame []byte, code int) {
		t.Run(name, func(t *testing.T) {
			c := rawUpgrade(t, s, acc.Key)
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			expectRawClose(t, c, code)
		})
	}
	violation("unmasked", clientFrame(true, 0, 0x1, false, ping), 1002)
	violation("reserved bits", clientFrame(true, 4, 0x1, true, ping), 1002)
	violation("reserved opcode", clientFrame(true, 0, 0x3, true, ping), 1002)
	violation("control opcode 0xB", clientFrame(true, 0, 0xB, true, nil), 1002)
	violation("fragmented ping", clientFrame(false, 0, 0x9, true, nil), 1002)
	violation("ping over 125 bytes", clientFrame(true, 0, 0x9, true, make([]byte, 126)), 1002)
	violation("continuation first", clientFrame(true, 0, 0x0, true, ping), 1002)
	violation("invalid UTF-8", clientFrame(true, 0, 0x1, true, []byte{'"', 0xff, 0xfe, '"'}), 1007)
	violation("bad close code", clientFrame(true, 0, 0x8, true, []byte{0x03, 0xE7}), 1002) // 999
	violation("close code 1005 on the wire", clientFrame(true, 0, 0x8, true, []byte{0x03, 0xED}), 1002)
	violation("one-byte close payload", clientFrame(true, 0, 0x8, true, []byte{0x03}), 1002)
	violation("text inside a fragmented message",
		append(clientFrame(false, 0, 0x1, true, []byte(`{"type":`)), clientFrame(true, 0, 0x1, true, ping)...), 1002)

	t.Run("length header above the cap is refused before the payload", func(t *testing.T) {
		c := rawUpgrade(t, s, acc.Key)
		// Only the header of a 1 GiB frame: the server must answer at once.
		hdr := []byte{0x81, 0x80 | 127, 0, 0, 0, 0x40, 0, 0, 0, 0, 1, 2, 3, 4}
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		expectRawText(t, c, "frame too large")
		expectRawClose(t, c, 1009)
	})

	t.Run("one-byte fragments with a ping between them", func(t *testing.T) {
		c := rawUpgrade(t, s, acc.Key)
		msg := []byte(`{"type":"ping"}`)
		var stream []byte
		for i := range msg {
			op := byte(0x0)
			if i == 0 {
				op = 0x1
			}
			stream = append(stream, clientFrame(i == len(msg)-1, 0, op, true, msg[i:i+1])...)
			if i == 3 {
				stream = append(stream, clientFrame(true, 0, 0x9, true, []byte("hi"))...)
			}
		}
		// Written a byte at a time: the parser must reassemble headers too.
		for _, b := range stream {
			if _, err := c.Write([]byte{b}); err != nil {
				t.Fatal(err)
			}
		}
		op, p := serverFrame(t, c)
		if op != 0xA || string(p) != "hi" {
			t.Fatalf("want pong \"hi\", got op %d %q", op, p)
		}
		expectRawText(t, c, `"pong"`)
	})

	t.Run("client close is echoed", func(t *testing.T) {
		c := rawUpgrade(t, s, acc.Key)
		writeClientFrame(t, c, 0x8, []byte{0x03, 0xE8, 'b', 'y', 'e'})
		expectRawClose(t, c, 1000)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("connection still open after the close handshake")
		}
	})

	t.Run("empty close is echoed empty", func(t *testing.T) {
		c := rawUpgrade(t, s, acc.Key)
		writeClientFrame(t, c, 0x8, nil)
		op, p := serverFrame(t, c)
		if op != 0x8 || len(p) != 0 {
			t.Fatalf("op %d payload %q", op, p)
		}
	})
}

func TestHTTPAbuse(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.HTTPIdleTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(s.URL, "http://")

	t.Run("handshake trickled a byte at a time is dropped at the deadline", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
		start := time.Now()
		for i := 0; ; i = (i + 1) % len(req) {
			if _, err := c.Write([]byte{req[i]}); err != nil {
				break // the server closed it
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("trickling connection never dropped")
			}
			time.Sleep(20 * time.Millisecond) // the trickle itself (the client's pace)
		}
	})

	t.Run("huge headers get 431", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			_, _ = c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "))
			big := []byte(strings.Repeat("b", 16<<10))
			for i := 0; i < 64; i++ {
				if _, err := c.Write(big); err != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(c, buf, 12)
		if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 431") {
			t.Fatalf("got %q", buf[:n])
		}
	})
}
