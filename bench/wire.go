package bench

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
)

// The client side of RFC 6455, as much as the harness needs: it writes a
// handshake and masked frames, and parses the server's unmasked frames. It
// is written here (not taken from a WebSocket library) so that a
// connection costs one small struct and no goroutine, and so that the
// harness depends on nothing but the public protocol.

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// wsKey is the Sec-WebSocket-Key every harness connection sends. RFC 6455
// asks for a random key per connection so that proxies cannot be fooled;
// on loopback against our own server one fixed key is enough, and it saves
// a SHA-1 per connection on both sides of the comparison.
const wsKey = "bWFpbHdpcmUtYmVuY2gtMQ=="

// wsAccept is the Sec-WebSocket-Accept the server must answer wsKey with.
var wsAccept = func() string {
	h := sha1.Sum([]byte(wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}()

// appendHandshake appends the opening handshake for path on host,
// authenticated with key (Authorization header).
func appendHandshake(dst []byte, host, path, key string) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "...)
	dst = append(dst, wsKey...)
	if key != "" {
		dst = append(dst, "\r\nAuthorization: Bearer "...)
		dst = append(dst, key...)
	}
	return append(dst, "\r\n\r\n"...)
}

var (
	errNeedMore      = errors.New("need more bytes")
	errBadHandshake  = errors.New("bad handshake answer")
	errMaskedFrame   = errors.New("server frame is masked")
	errFrameTooLarge = errors.New("server frame too large")
)

// handshakeError is a non-101 answer to the upgrade.
type handshakeError struct{ status int }

func (e *handshakeError) Error() string { return "upgrade refused: HTTP " + strconv.Itoa(e.status) }

// parseHandshake reads the server's answer at the start of b. It returns
// the length of the head (the frames that follow start there), or
// errNeedMore, a *handshakeError for another status, or errBadHandshake.
func parseHandshake(b []byte) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > 8<<10 {
			return 0, errBadHandshake
		}
		return 0, errNeedMore
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	// "HTTP/1.1 101 Switching Protocols"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, errBadHandshake
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errBadHandshake
	}
	if status != 101 {
		return 0, &handshakeError{status}
	}
	accepted := false
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, val, ok := bytes.Cut(h, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			accepted = string(bytes.TrimSpace(val)) == wsAccept
		}
	}
	if !accepted {
		return 0, errBadHandshake
	}
	return end + 4, nil
}

// frame is one parsed server frame; payload aliases the input.
type frame struct {
	fin     bool
	op      byte
	payload []byte
	size    int // header + payload bytes consumed
}

// maxServerFrame bounds one server frame the client accepts (events are
// small; a huge length means the stream is corrupt).
const maxServerFrame = 16 << 20

// parseFrame parses the server frame at the start of b.
func parseFrame(b []byte) (frame, error) {
	var f frame
	if len(b) < 2 {
		return f, errNeedMore
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0F
	if b[1]&0x80 != 0 {
		return f, errMaskedFrame
	}
	n := 2
	var l uint64
	switch x := b[1] & 0x7F; x {
	case 126:
		if len(b) < 4 {
			return f, errNeedMore
		}
		l, n = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return f, errNeedMore
		}
		l, n = binary.BigEndian.Uint64(b[2:10]), 10
	default:
		l = uint64(x)
	}
	if l > maxServerFrame {
		return f, errFrameTooLarge
	}
	if uint64(len(b)-n) < l {
		return f, errNeedMore
	}
	f.payload = b[n : n+int(l)]
	f.size = n + int(l)
	return f, nil
}

// appendClientFrame appends a final, masked client frame. The mask is
// fixed per call site's choice; servers must unmask whatever it is.
func appendClientFrame(dst []byte, op byte, payload []byte, mask [4]byte) []byte {
	dst = append(dst, 0x80|op)
	switch l := len(payload); {
	case l <= 125:
		dst = append(dst, 0x80|byte(l))
	case l <= 0xFFFF:
		dst = append(dst, 0x80|126, byte(l>>8), byte(l))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(l))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[start+i] ^= mask[i&3]
	}
	return dst
}

// closeCode returns the status code of a close frame's payload (1005 when
// it has none).
func closeCode(payload []byte) int {
	if len(payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(payload))
}
