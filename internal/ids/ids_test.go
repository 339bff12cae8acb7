package ids

import (
	"testing"
	"time"
)

// A Sequence's ids increase in the order they are made although other ids
// (of other times) are made in between from the shared source, which
// resets its entropy whenever the millisecond differs.
func TestSequenceIsMonotonic(t *testing.T) {
	q := NewSequence(Event)
	prev := q.Next()
	for i := 0; i < 20000; i++ {
		_ = NewAt(Message, time.Now().Add(-time.Millisecond)) // an earlier millisecond, between two
		id := q.Next()
		if id <= prev {
			t.Fatalf("id %d: %s after %s", i, id, prev)
		}
		if !Valid(Event, id) {
			t.Fatalf("malformed %s", id)
		}
		prev = id
	}
}
