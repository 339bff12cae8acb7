package subs

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// s builds a []string in a call list; s() is nil.
func s(v ...string) []string { return v }

// describe renders a Filter through its accessors: "none", or "inboxes=<part> types=<part>" where
// a part is "all", "all-[x y]" (all but an exclusion set) or "[a b]".
func describe(f Filter) string {
	if f.IsZero() {
		if f.AllInboxes() || f.AllTypes() || f.InboxIDs() != nil || f.ExcludedInboxIDs() != nil || f.EventTypes() != nil {
			return fmt.Sprintf("BUG: zero filter with content %#v", f)
		}
		return "none"
	}
	var b strings.Builder
	b.WriteString("inboxes=")
	switch {
	case f.AllInboxes() && f.InboxIDs() != nil:
		return fmt.Sprintf("BUG: all inboxes and a set: %#v", f)
	case !f.AllInboxes() && f.ExcludedInboxIDs() != nil:
		return fmt.Sprintf("BUG: exclusions without all: %#v", f)
	case f.AllInboxes() && f.ExcludedInboxIDs() != nil:
		fmt.Fprintf(&b, "all-%v", f.ExcludedInboxIDs())
	case f.AllInboxes():
		b.WriteString("all")
	default:
		fmt.Fprintf(&b, "%v", f.InboxIDs())
	}
	b.WriteString(" types=")
	switch {
	case f.AllTypes() && f.EventTypes() != nil:
		return fmt.Sprintf("BUG: all types and a set: %#v", f)
	case f.AllTypes():
		b.WriteString("all")
	default:
		fmt.Fprintf(&b, "%v", f.EventTypes())
	}
	return b.String()
}

// unsub is Unsubscribe without the removed list, so that calls chain.
func unsub(f Filter, ids ...string) Filter {
	nf, _ := f.Unsubscribe(ids)
	return nf
}

func TestFilterSubscribe(t *testing.T) {
	f := func(got Filter, want string) {
		t.Helper()
		if d := describe(got); d != want {
			t.Fatalf("got %s, want %s", d, want)
		}
	}
	var z Filter
	all := z.Subscribe(nil, nil)

	f(z, "none")
	f(all, "inboxes=all types=all")
	f(z.Subscribe(s(), s()), "inboxes=all types=all")

	// Inbox ids only: those inboxes, all types. Input sorted and deduplicated.
	f(z.Subscribe(s("b", "a", "b"), nil), "inboxes=[a b] types=all")
	// Types only: all inboxes, those types.
	f(z.Subscribe(nil, s("t2", "t1", "t2")), "inboxes=all types=[t1 t2]")
	f(z.Subscribe(s("a"), s("t1")), "inboxes=[a] types=[t1]")

	// Subscriptions accumulate.
	f(z.Subscribe(s("a"), nil).Subscribe(s("c", "b"), nil), "inboxes=[a b c] types=all")
	f(z.Subscribe(s("c"), nil).Subscribe(s("a", "c"), nil), "inboxes=[a c] types=all")
	f(z.Subscribe(s("a"), s("t2")).Subscribe(s("a"), s("t1")), "inboxes=[a] types=[t1 t2]")
	f(z.Subscribe(s("a"), s("t1")).Subscribe(s("b"), s("t1")), "inboxes=[a b] types=[t1]")

	// "all" absorbs specific ids, in either order.
	f(all.Subscribe(s("a"), nil), "inboxes=all types=all")
	f(z.Subscribe(s("a", "b"), nil).Subscribe(nil, nil), "inboxes=all types=all")

	// "all types" absorbs specific types; a subscribe without types makes them all again.
	f(z.Subscribe(s("a"), nil).Subscribe(s("a"), s("t1")), "inboxes=[a] types=all")
	f(z.Subscribe(s("a"), s("t1")).Subscribe(s("b"), nil), "inboxes=[a b] types=all")
	f(z.Subscribe(s("a"), s("t1")).Subscribe(s("b"), s()), "inboxes=[a b] types=all")
	// A subscribe that names only types widens the inbox part to all (§4: no inbox_ids = all).
	f(z.Subscribe(s("a"), s("t1")).Subscribe(nil, s("t2")), "inboxes=all types=[t1 t2]")

	// Under "all", subscribing ids takes them out of the exclusion set, and nothing else.
	f(unsub(all, "x", "y").Subscribe(s("x"), nil), "inboxes=all-[y] types=all")
	f(unsub(all, "x", "y").Subscribe(s("x", "y"), nil), "inboxes=all types=all")
	f(unsub(all, "x").Subscribe(s("q"), nil), "inboxes=all-[x] types=all")
	// A subscribe that names no inbox keeps the exclusion set: only naming an inbox lifts it
	// (PROTOCOL §4; this used to clear it).
	f(unsub(all, "x", "y").Subscribe(nil, nil), "inboxes=all-[x y] types=all")
	f(unsub(all, "x").Subscribe(nil, s("t1")), "inboxes=all-[x] types=all")
	f(unsub(all, "x").Subscribe(nil, s("t1")).Subscribe(s("x"), nil), "inboxes=all types=all")
}

func TestFilterUnsubscribe(t *testing.T) {
	f := func(in Filter, ids []string, want string, wantRemoved []string) {
		t.Helper()
		got, removed := in.Unsubscribe(ids)
		if d := describe(got); d != want {
			t.Fatalf("Unsubscribe(%q): got %s, want %s", ids, d, want)
		}
		if !slices.Equal(removed, wantRemoved) || (removed == nil) != (wantRemoved == nil) {
			t.Fatalf("Unsubscribe(%q): removed %#v, want %#v", ids, removed, wantRemoved)
		}
	}
	var z Filter
	all := z.Subscribe(nil, nil)
	abc := z.Subscribe(s("a", "b", "c"), s("t1"))

	// Unsubscribe from everything: the zero Filter, removed nil (the frame says []).
	f(abc, nil, "none", nil)
	f(abc, s(), "none", nil)
	f(all, nil, "none", nil)
	f(unsub(all, "x"), nil, "none", nil)
	f(z, nil, "none", nil)

	// From a set.
	f(abc, s("b"), "inboxes=[a c] types=[t1]", s("b"))
	f(abc, s("c", "a", "c"), "inboxes=[b] types=[t1]", s("a", "c"))
	// Ids not in the set change nothing and are not reported (the frame names only what was removed).
	f(abc, s("z"), "inboxes=[a b c] types=[t1]", nil)
	f(z, s("z"), "none", nil)
	// A set left empty matches nothing: the zero Filter.
	f(abc, s("a", "b", "c"), "none", s("a", "b", "c"))
	f(abc, s("c", "b", "a", "d"), "none", s("a", "b", "c"))

	// Under "all" the ids go into the exclusion set, and accumulate there.
	f(all, s("b", "a", "b"), "inboxes=all-[a b] types=all", s("a", "b"))
	f(unsub(all, "b"), s("a"), "inboxes=all-[a b] types=all", s("a"))
	f(unsub(all, "b"), s("b"), "inboxes=all-[b] types=all", nil) // excluded already
	f(z.Subscribe(nil, s("t1")), s("a"), "inboxes=all-[a] types=[t1]", s("a"))

	// After unsubscribing from everything nothing is remembered: ids alone mean all types again.
	f(unsub(abc).Subscribe(s("a"), nil), nil, "none", nil)
	f(unsub(abc).Subscribe(s("a"), nil), s("b"), "inboxes=[a] types=all", nil)
	// Nor after a set was emptied (the zero Filter is the only "matches nothing").
	f(unsub(abc, "a", "b", "c").Subscribe(s("d"), nil), s("z"), "inboxes=[d] types=all", nil)
}

func TestFilterWithoutInbox(t *testing.T) {
	f := func(in Filter, id string, want string) {
		t.Helper()
		if d := describe(in.WithoutInbox(id)); d != want {
			t.Fatalf("WithoutInbox(%q): got %s, want %s", id, d, want)
		}
	}
	var z Filter
	all := z.Subscribe(nil, nil)
	ab := z.Subscribe(s("a", "b"), s("t1"))

	f(ab, "a", "inboxes=[b] types=[t1]")
	f(ab, "b", "inboxes=[a] types=[t1]")
	f(ab, "z", "inboxes=[a b] types=[t1]")
	f(ab.WithoutInbox("a"), "b", "none")
	f(z.Subscribe(s("a"), nil), "a", "none")
	f(unsub(all, "a", "b"), "a", "inboxes=all-[b] types=all")
	f(unsub(all, "a"), "a", "inboxes=all types=all")
	f(all, "a", "inboxes=all types=all")
	f(z, "a", "none")
}

func TestFilterMatches(t *testing.T) {
	f := func(fl Filter, inbox, typ string, want bool) {
		t.Helper()
		if got := fl.Matches(inbox, typ); got != want {
			t.Fatalf("%s: Matches(%q, %q) = %v, want %v", describe(fl), inbox, typ, got, want)
		}
	}
	var z Filter
	all := z.Subscribe(nil, nil)

	f(z, "a", "t1", false)
	f(z, "", "", false)

	f(all, "a", "t1", true)
	f(all, "", "", true)

	ab := z.Subscribe(s("a", "b"), nil)
	f(ab, "a", "t1", true)
	f(ab, "b", "t9", true)
	f(ab, "c", "t1", false)
	f(ab, "", "t1", false)

	excl := unsub(all, "x")
	f(excl, "a", "t1", true)
	f(excl, "x", "t1", false)

	typed := z.Subscribe(nil, s("t1", "t3"))
	f(typed, "a", "t1", true)
	f(typed, "a", "t3", true)
	f(typed, "a", "t2", false)
	f(typed, "a", "", false)

	// Both parts must match.
	both := z.Subscribe(s("a"), s("t1"))
	f(both, "a", "t1", true)
	f(both, "a", "t2", false)
	f(both, "b", "t1", false)
	f(unsub(typed, "a"), "a", "t1", false)
	f(unsub(typed, "a"), "b", "t1", true)
	f(unsub(typed, "a"), "b", "t2", false)

	// Removed inboxes stop matching; emptied sets match nothing.
	f(unsub(ab, "a"), "a", "t1", false)
	f(unsub(ab, "a"), "b", "t1", true)
	f(unsub(ab, "a", "b"), "b", "t1", false)
	f(ab.WithoutInbox("a").WithoutInbox("b"), "a", "t1", false)
}

func TestFilterIsZero(t *testing.T) {
	f := func(fl Filter, want bool) {
		t.Helper()
		if got := fl.IsZero(); got != want {
			t.Fatalf("%#v: IsZero() = %v, want %v", fl, got, want)
		}
	}
	var z Filter
	f(z, true)
	f(z.Subscribe(nil, nil), false)
	f(z.Subscribe(s("a"), nil), false)
	f(z.Subscribe(nil, s("t")), false)
	f(unsub(z.Subscribe(nil, nil), "a"), false)
	f(unsub(z.Subscribe(s("a"), nil), "a"), true)
	f(unsub(z.Subscribe(nil, nil)), true)
	f(z.Subscribe(s("a"), nil).WithoutInbox("a"), true)
	// Not reachable through the methods, but "matches nothing" all the same.
	f(Filter{allInboxes: true}, true)
	f(Filter{inboxes: s("a"), allTypes: false}, true)
}

// A Filter, once returned, never changes: not through later derivations, not through the caller's
// argument or result slices.
func TestFilterImmutable(t *testing.T) {
	f := func(name string, fl Filter, want string) {
		t.Helper()
		if d := describe(fl); d != want {
			t.Fatalf("%s: got %s, want %s", name, d, want)
		}
	}
	var z Filter

	base := z.Subscribe(s("a", "c", "e"), s("t1", "t3"))
	const baseWant = "inboxes=[a c e] types=[t1 t3]"
	d1 := base.Subscribe(s("b"), s("t2"))
	d2 := base.Subscribe(s("d"), s("t4"))
	d3 := unsub(base, "c")
	d4 := base.WithoutInbox("a")
	f("base", base, baseWant)
	f("d1", d1, "inboxes=[a b c e] types=[t1 t2 t3]")
	f("d2", d2, "inboxes=[a c d e] types=[t1 t3 t4]")
	f("d3", d3, "inboxes=[a e] types=[t1 t3]")
	f("d4", d4, "inboxes=[c e] types=[t1 t3]")

	all := unsub(z.Subscribe(nil, nil), "x", "z")
	e1 := unsub(all, "y")
	e2 := all.Subscribe(s("x"), nil)
	e3 := all.WithoutInbox("z")
	f("all", all, "inboxes=all-[x z] types=all")
	f("e1", e1, "inboxes=all-[x y z] types=all")
	f("e2", e2, "inboxes=all-[z] types=all")
	f("e3", e3, "inboxes=all-[x] types=all")

	// Arguments are neither kept nor reordered.
	ids, types := s("b", "a"), s("t2", "t1")
	g := z.Subscribe(ids, types)
	if !slices.Equal(ids, s("b", "a")) || !slices.Equal(types, s("t2", "t1")) {
		t.Fatalf("Subscribe reordered its arguments: %q %q", ids, types)
	}
	ids[0], types[0] = "zz", "zz"
	f("after argument change", g, "inboxes=[a b] types=[t1 t2]")

	// The removed list belongs to the caller, also when it fills an empty exclusion set.
	h, removed := z.Subscribe(nil, nil).Unsubscribe(s("a", "b"))
	removed[0] = "zz"
	f("after removed change", h, "inboxes=all-[a b] types=all")

	// Accessors return copies.
	base.InboxIDs()[0] = "zz"
	base.EventTypes()[0] = "zz"
	all.ExcludedInboxIDs()[0] = "zz"
	f("base after accessor change", base, baseWant)
	f("all after accessor change", all, "inboxes=all-[x z] types=all")
}

func TestFilterMatchesAllocs(t *testing.T) {
	fl := unsub(Filter{}.Subscribe(nil, s("t1", "t2", "t3")), "x", "y")
	if n := testing.AllocsPerRun(100, func() { fl.Matches("a", "t2") }); n != 0 {
		t.Fatalf("Matches allocates %v times", n)
	}
}
