package subs

import (
	"slices"
)

// Filter is one connection's subscription (PROTOCOL §4): an inbox part and an event-type part. An
// event matches when both parts match.
//
// The zero Filter matches nothing: it is the state of a fresh connection and of one that
// unsubscribed from everything. Every method that yields a Filter matching nothing yields the zero
// Filter, so "matches nothing" has one representation, the same one the [Index] stores (by not
// storing it).
//
// Filter is immutable: methods return a new value and never modify the receiver's slices or the
// caller's arguments, and accessors return copies. Derived Filters may share backing arrays with
// the receiver; that is safe because no array is written after the Filter holding it is returned.
type Filter struct {
	// allInboxes: the inbox part is "every inbox of the account, except excluded" (and follows
	// inboxes created later). Otherwise it is the set inboxes.
	allInboxes bool
	// allTypes: the type part is "every type". Otherwise it is the set types.
	allTypes bool

	// The sets are sorted and free of duplicates (small; searched by bisection). inboxes is empty
	// when allInboxes is set, excluded is empty when it is not, types is empty when allTypes is set.
	// Empty sets are nil.
	inboxes  []string
	excluded []string
	types    []string
}

// Subscribe returns f with a subscribe frame applied.
//
// No inboxIDs (nil or empty) makes the inbox part "all"; an exclusion set it
// already had is kept (PROTOCOL §4: only naming an inbox lifts its
// exclusion). Otherwise, under "all" the ids leave the exclusion set, and
// else they are added to the inbox set ("all" absorbs specific ids). No
// types makes the type part "all types"; otherwise they are added to the
// type set, unless it is already "all types". So a first subscribe with
// types only means all inboxes, those types; with inbox ids only it means
// those inboxes, all types.
func (f Filter) Subscribe(inboxIDs, types []string) Filter {
	switch {
	case len(inboxIDs) == 0:
		if !f.allInboxes {
			f.excluded = nil
		}
		f.allInboxes, f.inboxes = true, nil
	case f.allInboxes:
		f.excluded = difference(f.excluded, normalize(inboxIDs))
	default:
		f.inboxes = union(f.inboxes, normalize(inboxIDs))
	}
	switch {
	case len(types) == 0:
		f.allTypes, f.types = true, nil
	case !f.allTypes:
		f.types = union(f.types, normalize(types))
	}
	return f
}

// Unsubscribe returns f with an unsubscribe frame applied, and the inboxes it removed (what the
// unsubscribed frame reports).
//
// No inboxIDs (nil or empty) clears everything: nf is the zero Filter and removed is nil (the
// frame says []). Otherwise, under "all" the ids join the exclusion set (so "stop sending me inbox
// X" holds) and removed lists those that were not excluded already; else they leave the inbox set
// and removed lists those that were in it. An inbox set left empty matches nothing, so nf is the
// zero Filter. removed is sorted and deduplicated, in a fresh slice the caller owns (nil when
// nothing was removed).
func (f Filter) Unsubscribe(inboxIDs []string) (nf Filter, removed []string) {
	if len(inboxIDs) == 0 {
		return Filter{}, nil
	}
	ids := normalize(inboxIDs)
	if f.allInboxes {
		removed = difference(ids, f.excluded)
		// union never returns its second argument, so removed stays the caller's alone.
		f.excluded = union(f.excluded, ids)
	} else {
		removed = intersection(ids, f.inboxes)
		f.inboxes = difference(f.inboxes, ids)
	}
	if len(removed) == 0 {
		removed = nil
	} else {
		removed = slices.Clone(removed)
	}
	return f.canonical(), removed
}

// WithoutInbox returns f without any mention of the inbox id, in the inbox set or in the exclusion
// set. It is applied to every Filter of the account when an inbox is deleted. A Filter whose inbox
// set becomes empty is the zero Filter.
func (f Filter) WithoutInbox(id string) Filter {
	nf, _ := f.withoutInbox(id)
	return nf
}

// withoutInbox is WithoutInbox that also reports whether anything changed, so that the Index can
// skip publishing a copy of an account that never named the inbox.
func (f Filter) withoutInbox(id string) (Filter, bool) {
	changed := false
	if i, ok := slices.BinarySearch(f.inboxes, id); ok {
		f.inboxes = deleteAt(f.inboxes, i)
		changed = true
	}
	if i, ok := slices.BinarySearch(f.excluded, id); ok {
		f.excluded = deleteAt(f.excluded, i)
		changed = true
	}
	return f.canonical(), changed
}

// Matches reports whether an event of the given inbox and type matches f. It does not allocate.
func (f Filter) Matches(inbox, typ string) bool {
	if f.allInboxes {
		if contains(f.excluded, inbox) {
			return false
		}
	} else if !contains(f.inboxes, inbox) {
		return false
	}
	return f.allTypes || contains(f.types, typ)
}

// IsZero reports whether f matches nothing at all: it has no inbox part (or an empty inbox set
// without "all"), or no type part.
func (f Filter) IsZero() bool {
	return (!f.allInboxes && len(f.inboxes) == 0) || (!f.allTypes && len(f.types) == 0)
}

// AllInboxes reports whether the inbox part is "all inboxes of the account" (minus
// [Filter.ExcludedInboxIDs]).
func (f Filter) AllInboxes() bool { return f.allInboxes }

// AllTypes reports whether the type part is "all types".
func (f Filter) AllTypes() bool { return f.allTypes }

// InboxIDs returns a sorted copy of the inbox set; nil when the inbox part is "all" or f is zero.
func (f Filter) InboxIDs() []string { return slices.Clone(f.inboxes) }

// ExcludedInboxIDs returns a sorted copy of the exclusion set; nil unless the inbox part is "all"
// and something is excluded.
func (f Filter) ExcludedInboxIDs() []string { return slices.Clone(f.excluded) }

// EventTypes returns a sorted copy of the type set; nil when the type part is "all types" or f is
// zero.
func (f Filter) EventTypes() []string { return slices.Clone(f.types) }

// canonical maps every Filter that matches nothing to the zero Filter.
func (f Filter) canonical() Filter {
	if f.IsZero() {
		return Filter{}
	}
	return f
}

// contains reports whether the sorted set s holds x. It does not allocate.
func contains(s []string, x string) bool {
	_, ok := slices.BinarySearch(s, x)
	return ok
}

// normalize returns a sorted, duplicate-free copy of ids; the caller's slice is left alone.
func normalize(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	s := slices.Clone(ids)
	slices.Sort(s)
	return slices.Compact(s)
}

// union returns the sorted set a ∪ b. It returns a itself when b adds nothing and a fresh slice
// otherwise — never b, so the result never shares an array with the caller's b.
func union(a, b []string) []string {
	added := 0
	for _, x := range b {
		if !contains(a, x) {
			added++
		}
	}
	if added == 0 {
		return a
	}
	out := make([]string, 0, len(a)+added)
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// difference returns the sorted set a \ b: a itself when nothing is removed, nil when nothing is
// left, a fresh slice otherwise.
func difference(a, b []string) []string {
	removed := 0
	for _, x := range a {
		if contains(b, x) {
			removed++
		}
	}
	switch removed {
	case 0:
		return a
	case len(a):
		return nil
	}
	out := make([]string, 0, len(a)-removed)
	for _, x := range a {
		if !contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// intersection returns the sorted set a ∩ b (possibly sharing a's array; callers clone it).
func intersection(a, b []string) []string {
	var out []string
	for _, x := range a {
		if contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// deleteAt returns a fresh copy of s without s[i] (nil when nothing is left). slices.Delete would
// write into s, which may be the array of a published Filter.
func deleteAt(s []string, i int) []string {
	if len(s) == 1 {
		return nil
	}
	out := make([]string, 0, len(s)-1)
	out = append(out, s[:i]...)
	return append(out, s[i+1:]...)
}
