package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is RFC 6455's cap on control frame payloads.
const maxControlPayload = 125

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin    bool
	rsv    byte // the three reserved bits (no extension is negotiated: must be 0)
	op     byte
	masked bool
	length uint64
	mask   [4]byte
	size   int // header length in bytes
}

var errNeedMore = errors.New("need more bytes")

// parseFrameHeader parses the header at the start of b. It returns
// errNeedMore when b is too short. It checks nothing beyond the encoding;
// the caller applies the protocol rules and limits (before any payload is
// buffered).
func parseFrameHeader(b []byte) (frameHeader, error) {
	var h frameHeader
	if len(b) < 2 {
		return h, errNeedMore
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] & 0x70
	h.op = b[0] & 0x0F
	h.masked = b[1]&0x80 != 0
	n := 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, errNeedMore
		}
		h.length = uint64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, errNeedMore
		}
		h.length = binary.BigEndian.Uint64(b[2:10])
		n = 10
	default:
		h.length = uint64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return h, errNeedMore
		}
		copy(h.mask[:], b[n:n+4])
		n += 4
	}
	h.size = n
	return h, nil
}

// unmask XORs payload with the mask in place.
func unmask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i&3]
	}
}

// frameHeaderLen is the header length of an unmasked server frame.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// putFrameHeader writes an unmasked FIN frame header for a payload of n
// bytes into b (len(b) >= frameHeaderLen(n)) and returns its length.
func putFrameHeader(b []byte, op byte, n int) int {
	b[0] = 0x80 | op
	switch {
	case n <= 125:
		b[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:4], uint16(n))
		return 4
	}
	b[1] = 127
	binary.BigEndian.PutUint64(b[2:10], uint64(n))
	return 10
}

// appendFrame appends an unmasked FIN frame with payload to dst.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	var hdr [10]byte
	n := putFrameHeader(hdr[:], op, len(payload))
	dst = append(dst, hdr[:n]...)
	return append(dst, payload...)
}

// closePayload is a close frame's payload: code and reason (the reason is
// cut to fit the 125-byte control frame limit on a rune boundary).
func closePayload(code int, reason string) []byte {
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	return append(p, reason...)
}

// validCloseCode reports whether a client may send code (RFC 6455 §7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// frameError is a protocol violation found while decoding: the connection
// is closed with code.
type frameError struct {
	code int
	msg  string
}

// frameDecoder splits the client byte stream into frames (RFC 6455 §5):
// it checks every header before buffering its payload (masking, reserved
// bits, opcodes, control frame rules, fragmentation order, the size cap),
// unmasks, and reassembles fragmented messages. It does no I/O. It holds
// no buffer while the stream is between frames. Not safe for concurrent
// use (nbio's poller goroutine owns it).
type frameDecoder struct {
	maxFrame int    // largest data message, in bytes
	rbuf     []byte // bytes of an incomplete frame
	frag     []byte // payload of an incomplete fragmented message
	fragOp   byte   // opcode of that message (0 = none)
	stopped  bool   // a violation or a close ended the stream
}

func (d *frameDecoder) stop() { d.stopped, d.rbuf, d.frag = true, nil, nil }

// feed decodes data. For each control frame and each complete data message
// it calls on(op, payload); payload is valid only during the call. After a
// violation (returned) or stop, the rest of the stream is ignored.
func (d *frameDecoder) feed(data []byte, on func(op byte, payload []byte)) *frameError {
	if d.stopped {
		return nil
	}
	buf := data
	if len(d.rbuf) > 0 {
		d.rbuf = append(d.rbuf, data...)
		buf = d.rbuf
	}
	for len(buf) > 0 && !d.stopped {
		h, err := parseFrameHeader(buf)
		if err == errNeedMore {
			break
		}
		if ferr := d.check(&h); ferr != nil {
			d.stop()
			return ferr
		}
		total := h.size + int(h.length)
		if len(buf) < total {
			break
		}
		payload := buf[h.size:total]
		unmask(payload, h.mask)
		buf = buf[total:]
		switch {
		case h.op >= opClose:
			on(h.op, payload)
		case h.op != opContinuation && h.fin:
			on(h.op, payload)
		case h.op != opContinuation:
			d.fragOp, d.frag = h.op, append(make([]byte, 0, len(payload)), payload...)
		default:
			d.frag = append(d.frag, payload...)
			if h.fin {
				op, msg := d.fragOp, d.frag
				d.fragOp, d.frag = 0, nil
				on(op, msg)
			}
		}
	}
	switch {
	case d.stopped || len(buf) == 0:
		d.rbuf = nil
	case len(d.rbuf) > 0:
		// buf is a tail of rbuf: move it to the front.
		n := copy(d.rbuf, buf)
		d.rbuf = d.rbuf[:n]
	default:
		d.rbuf = append(make([]byte, 0, len(buf)), buf...)
	}
	return nil
}

// check applies RFC 6455 and the size cap to a header, before its payload
// is buffered.
func (d *frameDecoder) check(h *frameHeader) *frameError {
	bad := func(msg string) *frameError { return &frameError{closeProtocolError, msg} }
	switch {
	case !h.masked:
		return bad("client frames must be masked")
	case h.rsv != 0:
		return bad("reserved bits set but no extension was negotiated")
	case h.op > opBinary && h.op < opClose || h.op > opPong:
		return bad(fmt.Sprintf("unknown opcode %d", h.op))
	case h.op >= opClose && (h.length > maxControlPayload || !h.fin):
		return bad("control frames must be unfragmented with at most 125 bytes")
	case h.op == opContinuation && d.fragOp == 0:
		return bad("continuation frame without a message to continue")
	case (h.op == opText || h.op == opBinary) && d.fragOp != 0:
		return bad("new message started before the fragmented one ended")
	case h.op < opClose && h.length > uint64(d.maxFrame)-uint64(len(d.frag)):
		return &frameError{closeTooBig, fmt.Sprintf("frame too large: messages are limited to %d bytes", d.maxFrame)}
	}
	return nil
}
