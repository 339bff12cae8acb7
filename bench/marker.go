package bench

import (
	"bytes"
	"strconv"
)

// A marker rides in the subject of every message the load generator
// sends, and so comes back in the event payload (message.subject), on the
// WebSocket and in webhook bodies alike:
//
//	mwb1.<run>.<inbox>.<seq>.<sent>[.<lag>]
//
// run is the run's id (8 hex digits: events of other runs on the same
// server are told apart), inbox the inbox's index in the run's plan, seq
// the message's number within that inbox (from 0, dense), sent the
// intended send time in Unix nanoseconds, lag (optional, µs) how much
// later the message actually left (a generator behind its schedule). The receiver needs no state from the sender
// to compute latency (now − sent: one machine, one clock), and counts
// loss and duplicates per (inbox, seq).
const markerPrefix = "mwb1."

// marker is a decoded marker.
type marker struct {
	run   uint32
	inbox int32
	seq   uint32
	sent  int64 // Unix ns: the intended send time
	lag   int64 // µs: actual send time − sent (0: on time)
}

// appendMarker appends m's text form.
func appendMarker(dst []byte, m marker) []byte {
	dst = append(dst, markerPrefix...)
	dst = appendHex8(dst, m.run)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(m.inbox), 10)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, uint64(m.seq), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, m.sent, 10)
	if m.lag > 0 {
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, m.lag, 10)
	}
	return dst
}

func appendHex8(dst []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for i := 28; i >= 0; i -= 4 {
		dst = append(dst, digits[(v>>uint(i))&0xF])
	}
	return dst
}

// findMarker finds and decodes the first marker in b.
func findMarker(b []byte) (marker, bool) {
	i := bytes.Index(b, []byte(markerPrefix))
	if i < 0 {
		return marker{}, false
	}
	return parseMarker(b[i+len(markerPrefix):])
}

// parseMarker decodes the fields after the prefix; the marker ends at the
// first byte that is neither a digit, a hex letter nor a dot.
func parseMarker(b []byte) (marker, bool) {
	var m marker
	var f [4]uint64
	// run: exactly 8 hex digits.
	if len(b) < 9 || b[8] != '.' {
		return m, false
	}
	for _, c := range b[:8] {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return m, false
		}
		m.run = m.run<<4 | uint32(d)
	}
	b = b[9:]
	for k := 0; k < 3; k++ {
		n := 0
		for n < len(b) && n < 20 && '0' <= b[n] && b[n] <= '9' {
			f[k] = f[k]*10 + uint64(b[n]-'0')
			n++
		}
		if n == 0 {
			return m, false
		}
		b = b[n:]
		if k < 2 {
			if len(b) == 0 || b[0] != '.' {
				return m, false
			}
			b = b[1:]
		}
	}
	if f[0] > 1<<31-1 || f[1] > 1<<32-1 || f[2] > 1<<63-1 {
		return m, false
	}
	m.inbox, m.seq, m.sent = int32(f[0]), uint32(f[1]), int64(f[2])
	if len(b) > 1 && b[0] == '.' && '0' <= b[1] && b[1] <= '9' {
		var lag uint64
		for n := 1; n < len(b) && n < 20 && '0' <= b[n] && b[n] <= '9'; n++ {
			lag = lag*10 + uint64(b[n]-'0')
		}
		m.lag = int64(min(lag, 1<<62))
	}
	return m, true
}

var eventIDField = []byte(`"event_id":"`)

// findEventID returns the event_id of an event payload (aliasing b), or
// nil.
func findEventID(b []byte) []byte {
	i := bytes.Index(b, eventIDField)
	if i < 0 {
		return nil
	}
	b = b[i+len(eventIDField):]
	j := bytes.IndexByte(b, '"')
	if j <= 0 || j > 64 {
		return nil
	}
	return b[:j]
}
