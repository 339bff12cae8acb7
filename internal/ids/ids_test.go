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

func TestPred(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := Pred(Event, in); got != want {
			t.Errorf("Pred(%q) = %q, want %q", in, got, want)
		}
	}
	f("evt_00000000000000000000000001", "evt_00000000000000000000000000")
	f("evt_00000000000000000000000010", "evt_0000000000000000000000000Z")
	f("evt_01JD7Z8Q7W3M1X5K2B9N4C6V90", "evt_01JD7Z8Q7W3M1X5K2B9N4C6V8Z")
	f("evt_00000000000000000000000000", "evt_00000000000000000000000000") // the smallest
	f("evt_nope", "evt_nope")
	f("msg_01JD7Z8Q7W3M1X5K2B9N4C6V90", "msg_01JD7Z8Q7W3M1X5K2B9N4C6V90") // another kind
	for range 1000 {
		id := New(Event)
		p := Pred(Event, id)
		if !Valid(Event, p) || p >= id {
			t.Fatalf("Pred(%s) = %s", id, p)
		}
	}
}
