package bench

import "math/bits"

// seqSet records which sequence numbers of one inbox one subscriber has
// received, to tell a first arrival from a duplicate exactly. Events mostly
// arrive in order, so it keeps a watermark (every seq below base arrived)
// and a bitmap of the window above it that slides as the watermark
// advances: a subscriber costs a word or two per inbox, however long the
// run.
//
// A hole that stays open (a lost event) stops the watermark; the window
// then grows, up to seqWindowWords words. Past that the oldest word is
// written off: its holes are counted in writtenOff, and a seq below base
// that arrives afterwards is counted as uncertain (late or duplicate, the
// set no longer knows) rather than guessed.
type seqSet struct {
	base       uint32
	win        []uint64
	writtenOff uint64
}

// seqWindowWords bounds the bitmap: 4096 words = 262,144 sequence numbers
// (32 KiB) of reordering or loss per subscriber and inbox.
const seqWindowWords = 4096

// seqVerdict is what add found.
type seqVerdict uint8

const (
	seqFresh     seqVerdict = iota // first arrival
	seqDuplicate                   // arrived before
	seqUncertain                   // below a written-off window: late or duplicate
)

// add records seq.
func (s *seqSet) add(seq uint32) seqVerdict {
	if seq < s.base {
		if s.writtenOff > 0 {
			return seqUncertain
		}
		return seqDuplicate
	}
	off := uint64(seq - s.base)
	w := int(off / 64)
	if w >= seqWindowWords {
		s.writeOff(w - seqWindowWords + 1)
		off = uint64(seq - s.base)
		w = int(off / 64)
	}
	for w >= len(s.win) {
		s.win = append(s.win, 0)
	}
	bit := uint64(1) << (off % 64)
	if s.win[w]&bit != 0 {
		return seqDuplicate
	}
	s.win[w] |= bit
	for len(s.win) > 0 && s.win[0] == ^uint64(0) {
		s.win = s.win[1:]
		s.base += 64
	}
	if len(s.win) == 0 {
		s.win = nil // drop the backing array of a fully received window
	}
	return seqFresh
}

// writeOff drops the first n words of the window (which may extend past
// its end), counting their holes.
func (s *seqSet) writeOff(n int) {
	k := min(n, len(s.win))
	for _, x := range s.win[:k] {
		s.writtenOff += uint64(64 - bits.OnesCount64(x))
	}
	s.writtenOff += uint64(n-k) * 64
	s.win = s.win[k:]
	s.base += uint32(n * 64)
}

// inboxTrack is one subscriber's seqSet for one inbox.
type inboxTrack struct {
	inbox int32
	set   seqSet
}

// tracker is one logical subscriber's record across its reconnections:
// a seqSet per inbox it expects events from.
type tracker struct {
	tracks []inboxTrack
}

func newTracker(expect []int32) tracker {
	t := tracker{tracks: make([]inboxTrack, len(expect))}
	for i, in := range expect {
		t.tracks[i].inbox = in
	}
	return t
}

// add records (inbox, seq); unexpected reports an inbox the subscriber
// does not expect (a subscription the server did not honour).
func (t *tracker) add(inbox int32, seq uint32) (v seqVerdict, unexpected bool) {
	for i := range t.tracks {
		if t.tracks[i].inbox == inbox {
			return t.tracks[i].set.add(seq), false
		}
	}
	return 0, true
}
