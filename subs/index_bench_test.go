package subs

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
)

// benchConn stands for the server's per-connection state; the Index holds pointers to it.
type benchConn struct{ id int }

type benchEvent struct{ account, inbox, typ string }

const (
	benchInboxesPerAccount = 5
	benchTypeWS            = "message.received"
)

// randomID returns prefix + n characters of the ULID alphabet, like the ids of the store.
func randomID(rng *rand.Rand, prefix string, n int) string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := []byte(prefix)
	for range n {
		b = append(b, alphabet[rng.IntN(len(alphabet))])
	}
	return string(b)
}

// pickClone returns a copy of a random element of ids. The server's subscriptions and events carry
// their own copies of an id (decoded from different frames and rows); sharing one would let string
// comparison stop at the pointer and flatter Match.
func pickClone(rng *rand.Rand, ids []string) string {
	return strings.Clone(ids[rng.IntN(len(ids))])
}

// buildBenchIndex returns an Index of subs subscriptions spread over accounts accounts, mixed as
// the server would see them (mostly "everything", then specific inboxes, type filters and
// exclusions), and events for those accounts (one in ten of a type few subscribe to).
func buildBenchIndex(accounts, subs int) (*Index[*benchConn], []benchEvent) {
	rng := rand.New(rand.NewPCG(1, 2))
	ix := New[*benchConn]()
	accIDs := make([]string, accounts)
	inboxIDs := make([][]string, accounts)
	for a := range accIDs {
		accIDs[a] = randomID(rng, "acc_", 26)
		inboxIDs[a] = make([]string, benchInboxesPerAccount)
		for i := range inboxIDs[a] {
			inboxIDs[a][i] = randomID(rng, "inb_", 8)
		}
	}
	for c := range subs {
		a := c % accounts
		inb := inboxIDs[a]
		conn := &benchConn{id: c}
		var fn func(Filter) Filter
		switch k := rng.IntN(100); {
		case k < 40: // everything
			fn = func(f Filter) Filter { return f.Subscribe(nil, nil) }
		case k < 70: // one to three inboxes
			ids := []string{pickClone(rng, inb), pickClone(rng, inb), pickClone(rng, inb)}[:1+rng.IntN(3)]
			fn = func(f Filter) Filter { return f.Subscribe(ids, nil) }
		case k < 85: // all inboxes, one type
			fn = func(f Filter) Filter { return f.Subscribe(nil, []string{benchTypeWS}) }
		default: // all inboxes but one, two types
			ex := pickClone(rng, inb)
			fn = func(f Filter) Filter {
				nf, _ := f.Subscribe(nil, []string{benchTypeWS, "inbox.suspended"}).Unsubscribe([]string{ex})
				return nf
			}
		}
		ix.Update(accIDs[a], conn, fn)
	}
	events := make([]benchEvent, 1<<12)
	for i := range events {
		a := rng.IntN(accounts)
		typ := benchTypeWS
		if rng.IntN(10) == 0 {
			typ = "message.sent"
		}
		events[i] = benchEvent{strings.Clone(accIDs[a]), pickClone(rng, inboxIDs[a]), strings.Clone(typ)}
	}
	return ix, events
}

func BenchmarkMatch(b *testing.B) {
	ix, events := buildBenchIndex(10_000, 100_000)
	dst := make([]*benchConn, 0, 64)
	matched := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := &events[i&(len(events)-1)]
		dst = ix.Match(dst[:0], ev.account, ev.inbox, ev.typ)
		matched += len(dst)
	}
	b.ReportMetric(float64(matched)/float64(b.N), "conns/op")
}

func BenchmarkMatchParallel(b *testing.B) {
	ix, events := buildBenchIndex(10_000, 100_000)
	var seed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]*benchConn, 0, 64)
		for i := int(seed.Add(997)); pb.Next(); i++ {
			ev := &events[i&(len(events)-1)]
			dst = ix.Match(dst[:0], ev.account, ev.inbox, ev.typ)
		}
	})
}

func BenchmarkUpdate(b *testing.B) {
	ix, events := buildBenchIndex(10_000, 100_000)

	// A connection of a live account toggles one inbox: copies the account's entry list.
	b.Run("existing-account", func(b *testing.B) {
		conns := make([]*benchConn, len(events))
		for i := range conns {
			conns[i] = &benchConn{id: -1 - i}
			ev := &events[i]
			ix.Update(ev.account, conns[i], func(f Filter) Filter { return f.Subscribe(nil, nil) })
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			ev := &events[i&(len(events)-1)]
			ix.Update(ev.account, conns[i&(len(events)-1)], func(f Filter) Filter {
				if f.Matches(ev.inbox, ev.typ) {
					nf, _ := f.Unsubscribe([]string{ev.inbox})
					return nf
				}
				return f.Subscribe([]string{ev.inbox}, nil)
			})
		}
		for i := range conns {
			ix.Remove(events[i].account, conns[i])
		}
	})

	// A connection of an account with no other subscription subscribes, then closes: each copies
	// the bucket's account map (accounts/4096 entries).
	newAccount := func(build func() *Index[*benchConn]) func(b *testing.B) {
		return func(b *testing.B) {
			ix := build()
			names := make([]string, 1<<10)
			for i := range names {
				names[i] = fmt.Sprintf("acc_new_%d", i)
			}
			conn := &benchConn{}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				acc := names[i&(len(names)-1)]
				ix.Update(acc, conn, func(f Filter) Filter { return f.Subscribe(nil, nil) })
				ix.Remove(acc, conn)
			}
		}
	}
	b.Run("new-account/10k-accounts", newAccount(func() *Index[*benchConn] { return ix }))
	b.Run("new-account/300k-accounts", newAccount(func() *Index[*benchConn] {
		big, _ := buildBenchIndex(300_000, 300_000)
		return big
	}))
}
