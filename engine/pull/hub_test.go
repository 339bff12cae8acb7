package pull

import (
	"errors"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/leakcheck"
	"github.com/mailwire/mailwire/store"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// recorder is a waiter's Wake: it records the calls (it must not block).
type recorder struct{ calls chan bool }

func newWaiter(acc string, d time.Duration) (*Waiter, *recorder) {
	r := &recorder{calls: make(chan bool, 8)}
	return &Waiter{AccountID: acc, Deadline: time.Now().Add(d), Wake: func(final bool) { r.calls <- final }}, r
}

func (r *recorder) next(t *testing.T) bool {
	t.Helper()
	select {
	case f := <-r.calls:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no wake")
		return false
	}
}

func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case f := <-r.calls:
		t.Fatalf("unexpected wake (final %v)", f)
	default:
	}
}

func ev(acc, inbox string) []store.Event {
	return []store.Event{{ID: "evt_x", AccountID: acc, InboxID: inbox, Type: store.EventMessageReceived}}
}

// The no-missed-wake protocol: an event stored while the owner reads
// (busy) makes Arm answer Retry; once armed, an event wakes it; events of
// other accounts or filtered out do neither.
func TestNoMissedWake(t *testing.T) {
	h := New(Config{})
	w, r := newWaiter("acc_a", time.Minute)
	w.Match = func(inbox, _ string) bool { return inbox == "inb_1" }
	if err := h.Add(w); err != nil {
		t.Fatal(err)
	}
	h.Stored(ev("acc_a", "inb_1"))
	if got := h.Arm(w); got != Retry {
		t.Fatalf("Arm after an event while busy = %v, want Retry", got)
	}
	if got := h.Arm(w); got != Armed {
		t.Fatalf("Arm = %v, want Armed", got)
	}
	h.Stored(ev("acc_b", "inb_1"))
	h.Stored(ev("acc_a", "inb_2"))
	r.none(t)
	h.Stored(ev("acc_a", "inb_1"))
	if r.next(t) {
		t.Fatal("an event's wake is not final")
	}
	// Woken, it is busy: events mark it dirty again, nothing more.
	h.Stored(ev("acc_a", "inb_1"))
	r.none(t)
	if got := h.Arm(w); got != Retry {
		t.Fatalf("Arm = %v, want Retry", got)
	}
	h.Done(w)
	h.Done(w)
	if h.Held() != 0 {
		t.Fatalf("held %d after Done", h.Held())
	}
	if got := h.Arm(w); got != Gone {
		t.Fatalf("Arm after Done = %v", got)
	}
}

// The deadline wakes an armed waiter (final); past it Arm is Final.
func TestDeadline(t *testing.T) {
	h := New(Config{})
	w, r := newWaiter("acc_a", 30*time.Millisecond)
	_ = h.Add(w)
	if got := h.Arm(w); got != Armed {
		t.Fatalf("Arm = %v", got)
	}
	if !r.next(t) {
		t.Fatal("the deadline's wake must be final")
	}
	if got := h.Arm(w); got != Final {
		t.Fatalf("Arm past the deadline = %v, want Final", got)
	}
	h.Done(w)
}

// Caps per account and in all; Cancel frees a slot; Drain wakes every
// armed waiter (final) and refuses new ones; Hurry.
func TestCapsCancelDrainHurry(t *testing.T) {
	h := New(Config{MaxPerAccount: 2, MaxTotal: 3})
	a1, r1 := newWaiter("acc_a", time.Minute)
	a2, _ := newWaiter("acc_a", time.Minute)
	a3, _ := newWaiter("acc_a", time.Minute)
	b1, rb := newWaiter("acc_b", time.Minute)
	c1, _ := newWaiter("acc_c", time.Minute)
	for _, w := range []*Waiter{a1, a2, b1} {
		if err := h.Add(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Add(a3); !errors.Is(err, ErrTooMany) {
		t.Fatalf("third of one account: %v", err)
	}
	if err := h.Add(c1); !errors.Is(err, ErrTooMany) {
		t.Fatalf("past the total: %v", err)
	}
	_ = h.Arm(a2)
	if !h.Cancel(a2) {
		t.Fatal("Cancel of an armed waiter reports false")
	}
	if err := h.Add(a3); err != nil {
		t.Fatalf("after a cancel: %v", err)
	}
	// Hurry: armed → the caller acts; busy → the next Arm is Final.
	_ = h.Arm(a1)
	if !h.Hurry(a1) {
		t.Fatal("Hurry of an armed waiter")
	}
	r1.none(t)
	if h.Hurry(a3) || h.Arm(a3) != Final {
		t.Fatal("Hurry of a busy waiter must make its Arm Final")
	}
	_ = h.Arm(b1)
	h.Drain()
	if !rb.next(t) {
		t.Fatal("the drain's wake must be final")
	}
	if got := h.Arm(a1); got != Final {
		t.Fatalf("Arm while draining = %v", got)
	}
	if err := h.Add(c1); !errors.Is(err, ErrDraining) {
		t.Fatalf("Add while draining: %v", err)
	}
	for _, w := range []*Waiter{a1, a3, b1} {
		h.Done(w)
	}
	if h.Held() != 0 {
		t.Fatalf("held %d", h.Held())
	}
}
