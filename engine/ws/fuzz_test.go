package ws

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeCommand: the client command decoder never panics, and what it
// accepts is a known type with well-typed fields; every error has a
// message for the client.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe"}`, `{"type":"subscribe","inbox_ids":["inb_01M8C9RB9X5V865CKTKNCS7WF4"],"event_types":["message.received"],"last_event_id":"evt_01M8C9RB9X5V865CKTKNCS7WF4"}`,
		`{"type":"unsubscribe","inbox_ids":[]}`, `{"type":"ack","event_id":"evt_x"}`, `{"type":"ping"}`,
		`{}`, `[]`, `null`, `"x"`, `{"type":null}`, `{"type":"subscribe","inbox_ids":null}`, `{"type":"ping"}{}`,
		`{"type":"subscribe","inbox_ids":[1,2]}`, "{\"type\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	known := map[string]bool{"subscribe": true, "unsubscribe": true, "ack": true, "ping": true}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if !known[c.Type] {
			t.Fatalf("accepted unknown type %q", c.Type)
		}
		if c.Type == "ack" && c.EventID == "" {
			t.Fatal("ack without event_id accepted")
		}
		if len(c.InboxIDs) > maxSubscribeIDs {
			t.Fatalf("%d inbox ids accepted", len(c.InboxIDs))
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
	})
}

// FuzzParseFrames feeds arbitrary bytes, cut at arbitrary points, through
// the client frame decoder the way nbio delivers reads: it never panics,
// never buffers more than the frame cap allows, and what it reports as
// messages are complete, unmasked and within the cap.
func FuzzParseFrames(f *testing.F) {
	mask := []byte{1, 2, 3, 4}
	frame := func(b0 byte, payload string) []byte {
		out := []byte{b0, 0x80 | byte(len(payload))}
		out = append(out, mask...)
		for i := 0; i < len(payload); i++ {
			out = append(out, payload[i]^mask[i%4])
		}
		return out
	}
	f.Add(frame(0x81, `{"type":"ping"}`), uint8(3))
	f.Add(append(frame(0x01, `{"type":`), frame(0x80, `"ping"}`)...), uint8(1))
	f.Add(append(frame(0x89, "hi"), frame(0x88, "\x03\xe8")...), uint8(5))
	f.Add([]byte{0x81, 0xFF, 0, 0, 0, 0x40, 0, 0, 0, 0, 1, 2, 3, 4}, uint8(2))
	f.Add([]byte{0x81, 0x7E, 0x01}, uint8(1))
	const maxFrame = 1 << 12
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		d := frameDecoder{maxFrame: maxFrame}
		step := int(cut)%64 + 1
		for i := 0; i < len(stream) && !d.stopped; i += step {
			end := min(i+step, len(stream))
			chunk := append([]byte(nil), stream[i:end]...)
			d.feed(chunk, func(op byte, msg []byte) {
				if len(msg) > maxFrame {
					t.Fatalf("message of %d bytes over the %d cap", len(msg), maxFrame)
				}
				if op != opText && op != opBinary && op != opPing && op != opPong && op != opClose {
					t.Fatalf("reported opcode %d", op)
				}
				if op == opText && !utf8.Valid(msg) {
					// Reported raw; UTF-8 is checked by the caller (1007).
					_ = bytes.Count(msg, nil)
				}
			})
			if len(d.rbuf) > maxFrame+14 || len(d.frag) > maxFrame {
				t.Fatalf("buffered %d + %d bytes", len(d.rbuf), len(d.frag))
			}
		}
	})
}
