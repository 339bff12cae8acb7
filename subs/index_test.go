package subs

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// Filter constructors for the Index tests.
func subAll() func(Filter) Filter {
	return func(f Filter) Filter { return f.Subscribe(nil, nil) }
}

func sub(inboxes, types []string) func(Filter) Filter {
	return func(f Filter) Filter { return f.Subscribe(inboxes, types) }
}

func unsubFn(ids ...string) func(Filter) Filter {
	return func(f Filter) Filter { return unsub(f, ids...) }
}

func checkCounts[C comparable](t *testing.T, ix *Index[C], conns, accounts int) {
	t.Helper()
	if ix.Len() != conns || ix.Accounts() != accounts {
		t.Fatalf("Len() = %d, Accounts() = %d; want %d, %d", ix.Len(), ix.Accounts(), conns, accounts)
	}
}

func TestIndexMultipleConnections(t *testing.T) {
	ix := New[string]()
	ix.Update("acc1", "c1", subAll())
	ix.Update("acc1", "c2", sub(s("inb_a"), nil))
	ix.Update("acc1", "c3", sub(nil, s("t2")))
	ix.Update("acc1", "c4", sub(s("inb_b"), s("t1")))
	checkCounts(t, ix, 4, 1)

	f := func(inbox, typ string, want ...string) {
		t.Helper()
		got := ix.Match(nil, "acc1", inbox, typ)
		if !slices.Equal(got, want) {
			t.Fatalf("Match(acc1, %q, %q) = %q, want %q", inbox, typ, got, want)
		}
		if has := ix.Has("acc1", inbox, typ); has != (len(want) > 0) {
			t.Fatalf("Has(acc1, %q, %q) = %v, want %v", inbox, typ, has, len(want) > 0)
		}
	}
	// Every matching connection, in the order they first subscribed.
	f("inb_a", "t1", "c1", "c2")
	f("inb_a", "t2", "c1", "c2", "c3")
	f("inb_b", "t1", "c1", "c4")
	f("inb_b", "t2", "c1", "c3")
	f("inb_c", "t3", "c1")

	// A change keeps the connection's place.
	ix.Update("acc1", "c1", unsubFn("inb_a"))
	f("inb_a", "t2", "c2", "c3")
	f("inb_b", "t1", "c1", "c4")

	// Match appends to dst.
	dst := ix.Match([]string{"x"}, "acc1", "inb_b", "t1")
	if !slices.Equal(dst, s("x", "c1", "c4")) {
		t.Fatalf("Match appended %q", dst)
	}
}

func TestIndexTenantIsolation(t *testing.T) {
	ix := New[string]()
	ix.Update("acc1", "c1", subAll())
	ix.Update("acc2", "c2", sub(s("inb_2"), nil))
	ix.Update("acc2", "c3", subAll())
	// The same connection value under two accounts is two independent entries.
	ix.Update("acc1", "shared", sub(s("inb_1"), nil))
	ix.Update("acc2", "shared", sub(s("inb_2"), nil))
	checkCounts(t, ix, 5, 2)

	f := func(account, inbox string, want ...string) {
		t.Helper()
		if got := ix.Match(nil, account, inbox, "t"); !slices.Equal(got, want) {
			t.Fatalf("Match(%q, %q) = %q, want %q", account, inbox, got, want)
		}
	}
	f("acc1", "inb_1", "c1", "shared")
	f("acc1", "inb_2", "c1") // acc2's inbox id, acc1's event: never acc2's connections
	f("acc2", "inb_2", "c2", "c3", "shared")
	f("acc2", "inb_1", "c3")
	f("acc3", "inb_1")
	f("", "inb_1")

	if got := ix.Get("acc2", "c1"); !got.IsZero() {
		t.Fatalf("Get(acc2, c1) = %s", describe(got))
	}
	ix.Remove("acc2", "shared")
	f("acc1", "inb_1", "c1", "shared")
	checkCounts(t, ix, 4, 2)
}

func TestIndexUpdateGet(t *testing.T) {
	ix := New[int]()
	f := func(got Filter, want string) {
		t.Helper()
		if d := describe(got); d != want {
			t.Fatalf("got %s, want %s", d, want)
		}
	}
	f(ix.Get("acc", 1), "none")
	// fn sees the current filter; the result is returned and stored.
	f(ix.Update("acc", 1, sub(s("a"), nil)), "inboxes=[a] types=all")
	f(ix.Update("acc", 1, sub(s("b"), nil)), "inboxes=[a b] types=all")
	f(ix.Get("acc", 1), "inboxes=[a b] types=all")
	f(ix.Get("acc", 2), "none")
	checkCounts(t, ix, 1, 1)

	// A zero result removes the entry, and the account with its last entry.
	f(ix.Update("acc", 1, unsubFn("a", "b")), "none")
	f(ix.Get("acc", 1), "none")
	checkCounts(t, ix, 0, 0)
	if got := ix.Match(nil, "acc", "a", "t"); got != nil {
		t.Fatalf("Match after removal = %v", got)
	}

	// A zero result for an absent connection changes nothing.
	f(ix.Update("acc", 1, unsubFn()), "none")
	f(ix.Update("acc", 1, unsubFn("a")), "none")
	checkCounts(t, ix, 0, 0)

	// The stored filter does not depend on what fn saw being zero or not.
	calls := 0
	ix.Update("acc", 3, func(cur Filter) Filter {
		calls++
		if !cur.IsZero() {
			t.Errorf("fn saw %s for a new connection", describe(cur))
		}
		return cur.Subscribe(nil, s("t1"))
	})
	if calls != 1 {
		t.Fatalf("fn ran %d times", calls)
	}
	f(ix.Get("acc", 3), "inboxes=all types=[t1]")
	checkCounts(t, ix, 1, 1)
}

func TestIndexRemove(t *testing.T) {
	ix := New[int]()
	ix.Update("acc1", 1, subAll())
	ix.Update("acc1", 2, subAll())
	ix.Update("acc2", 3, subAll())
	checkCounts(t, ix, 3, 2)

	ix.Remove("acc1", 1)
	checkCounts(t, ix, 2, 2)
	if got := ix.Match(nil, "acc1", "a", "t"); !slices.Equal(got, []int{2}) {
		t.Fatalf("Match = %v", got)
	}
	ix.Remove("acc1", 1) // twice
	ix.Remove("acc1", 3) // wrong account
	ix.Remove("nope", 3)
	checkCounts(t, ix, 2, 2)

	ix.Remove("acc1", 2)
	checkCounts(t, ix, 1, 1)
	if ix.Has("acc1", "a", "t") {
		t.Fatal("removed account still matches")
	}
	ix.Remove("acc2", 3)
	checkCounts(t, ix, 0, 0)
	for i := range ix.shards {
		for j := range ix.shards[i].buckets {
			if m := ix.shards[i].buckets[j].accounts.Load(); m != nil && len(*m) != 0 {
				t.Fatalf("shard %d bucket %d still holds %d accounts", i, j, len(*m))
			}
		}
	}
}

func TestIndexRemoveInbox(t *testing.T) {
	ix := New[string]()
	ix.Update("acc", "set", sub(s("x", "y"), nil))
	ix.Update("acc", "only-x", sub(s("x"), s("t1")))
	ix.Update("acc", "excl", unsubFn("x")) // zero: not stored
	ix.Update("acc", "excl", func(f Filter) Filter { return unsub(f.Subscribe(nil, nil), "x", "z") })
	ix.Update("acc", "all", subAll())
	ix.Update("other", "c", sub(s("x"), nil))
	checkCounts(t, ix, 5, 2)

	ix.RemoveInbox("acc", "x")
	f := func(conn, want string) {
		t.Helper()
		if d := describe(ix.Get("acc", conn)); d != want {
			t.Fatalf("%s: got %s, want %s", conn, d, want)
		}
	}
	f("set", "inboxes=[y] types=all")
	f("only-x", "none")
	f("excl", "inboxes=all-[z] types=all")
	f("all", "inboxes=all types=all")
	if d := describe(ix.Get("other", "c")); d != "inboxes=[x] types=all" {
		t.Fatalf("other account changed: %s", d)
	}
	checkCounts(t, ix, 4, 2)
	if got := ix.Match(nil, "acc", "y", "t1"); !slices.Equal(got, s("set", "excl", "all")) {
		t.Fatalf("Match = %q", got)
	}

	// An inbox no filter names: nothing is copied.
	bucket := &ix.slotOf("acc").bucket.accounts
	before := bucket.Load()
	entriesBefore := (*before)["acc"].entries.Load()
	ix.RemoveInbox("acc", "never")
	ix.RemoveInbox("nope", "x")
	if bucket.Load() != before || (*before)["acc"].entries.Load() != entriesBefore {
		t.Fatal("RemoveInbox of an unnamed inbox published a copy")
	}

	// The last inbox of the last connection: the account goes.
	ix.RemoveInbox("other", "x")
	checkCounts(t, ix, 3, 1)
}

// Match, Has and Get must not take the shard lock: here every shard lock is held by this
// goroutine, so a reader that locked would deadlock and the test would time out.
func TestReadersTakeNoLock(t *testing.T) {
	ix := New[int]()
	for i := range 200 {
		ix.Update(fmt.Sprintf("acc%d", i), i, subAll())
	}
	for i := range ix.shards {
		ix.shards[i].mu.Lock()
	}
	defer func() {
		for i := range ix.shards {
			ix.shards[i].mu.Unlock()
		}
	}()
	for i := range 200 {
		acc := fmt.Sprintf("acc%d", i)
		if got := ix.Match(nil, acc, "a", "t"); !slices.Equal(got, []int{i}) {
			t.Fatalf("Match(%s) = %v", acc, got)
		}
		if !ix.Has(acc, "a", "t") || ix.Get(acc, i).IsZero() {
			t.Fatalf("Has/Get(%s) found nothing", acc)
		}
	}
}

// Accounts spread evenly over shards (writer contention) and buckets (the cost of adding an
// account), whatever the shape of their ids.
func TestHashBalance(t *testing.T) {
	f := func(format string) {
		t.Helper()
		const buckets = shardCount * bucketsPerShard
		const perBucket = 25
		var perShard [shardCount]int
		var perBkt [buckets]int
		for i := range buckets * perBucket {
			h := hashAccount(fmt.Sprintf(format, i))
			perShard[h/bucketsPerShard]++
			perBkt[h]++
		}
		// Binomial: per shard mean 1600, sd 40; per bucket mean 25, sd 5. The bounds are 10 and
		// 4 standard deviations wide.
		for i, n := range perShard {
			if n < 1200 || n > 2000 {
				t.Fatalf("%s: shard %d got %d ids, want ~1600", format, i, n)
			}
		}
		for i, n := range perBkt {
			if n < 5 || n > 60 {
				t.Fatalf("%s: bucket %d got %d ids, want ~25", format, i, n)
			}
		}
	}
	f("acc_%d")
	f("acc_01JD7Z8Q7W3M1X5K%08X")
	f("%x")
}

// Accounts that share a bucket: adding and dropping them copies the bucket's map (by clone, or by
// rebuild once it has shrunk to a quarter), and every copy must hold exactly the live accounts.
func TestBucketChurn(t *testing.T) {
	const n = 64
	var names []string
	for i := 0; len(names) < n; i++ {
		if name := fmt.Sprintf("acc_%d", i); hashAccount(name) == 7 {
			names = append(names, name)
		}
	}
	ix := New[int]()
	b := ix.slotOf(names[0]).bucket
	rng := rand.New(rand.NewPCG(7, 7))
	live := map[string]bool{}
	check := func(step int) {
		t.Helper()
		var m map[string]*accountSubs[int]
		if p := b.accounts.Load(); p != nil {
			m = *p
		}
		if len(m) != len(live) || ix.Accounts() != len(live) || ix.Len() != len(live) {
			t.Fatalf("step %d: map holds %d, Accounts %d, Len %d; want %d", step, len(m), ix.Accounts(), ix.Len(), len(live))
		}
		if b.peak < len(live) {
			t.Fatalf("step %d: peak %d below %d live", step, b.peak, len(live))
		}
		for i, name := range names {
			if got := ix.Match(nil, name, "i", "t"); live[name] != (len(got) == 1 && got[0] == i) {
				t.Fatalf("step %d: Match(%s) = %v, live %v", step, name, got, live[name])
			}
		}
	}
	for step := range 2000 {
		i := rng.IntN(n)
		// Grow to all n, shrink to few, grow again: the rebuild path runs several times.
		grow := (step/200)%2 == 0
		if live[names[i]] && (!grow || rng.IntN(4) == 0) {
			ix.Remove(names[i], i)
			delete(live, names[i])
		} else if !live[names[i]] && (grow || rng.IntN(4) == 0) {
			ix.Update(names[i], i, subAll())
			live[names[i]] = true
		}
		check(step)
	}
}

func TestMatchAllocs(t *testing.T) {
	ix := New[*int]()
	conns := make([]*int, 10)
	for i := range conns {
		conns[i] = new(int)
		switch i % 3 {
		case 0:
			ix.Update("acc", conns[i], subAll())
		case 1:
			ix.Update("acc", conns[i], sub(s("inb_1", "inb_2"), nil))
		case 2:
			ix.Update("acc", conns[i], func(f Filter) Filter { return unsub(f.Subscribe(nil, s("t1", "t2")), "inb_3") })
		}
	}
	dst := make([]*int, 0, 16)
	if n := testing.AllocsPerRun(100, func() { dst = ix.Match(dst[:0], "acc", "inb_1", "t1") }); n != 0 {
		t.Fatalf("Match allocates %v times", n)
	}
	if len(dst) != 10 {
		t.Fatalf("Match found %d, want 10", len(dst))
	}
	if n := testing.AllocsPerRun(100, func() { dst = ix.Match(dst[:0], "nope", "inb_1", "t1") }); n != 0 {
		t.Fatalf("Match of an unknown account allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { ix.Has("acc", "inb_3", "t3") }); n != 0 {
		t.Fatalf("Has allocates %v times", n)
	}
}

// conn of the concurrency test: the account it belongs to is part of its identity, so a reader can
// tell a connection of another account.
type testConn struct{ acct, n int }

// Writers update, remove and delete inboxes while readers match; the race detector checks the
// publication protocol, the readers check tenant isolation and that a snapshot never holds a
// connection twice, and the end state is compared with what the writers did.
func TestIndexConcurrent(t *testing.T) {
	const (
		writers     = 4
		readers     = 4
		accsPerW    = 8 // writer w owns accounts w*accsPerW ... (w+1)*accsPerW-1
		connsPerAcc = 4
		ops         = 3000
	)
	inboxes := s("i0", "i1", "i2", "i3")
	types := s("t0", "t1")
	accName := func(a int) string { return fmt.Sprintf("acc%d", a) }

	ix := New[testConn]()
	models := make([]map[testConn]Filter, writers)
	var wwg, rwg sync.WaitGroup
	var stop atomic.Bool
	for w := range writers {
		model := map[testConn]Filter{}
		models[w] = model
		wwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				c := testConn{acct: w*accsPerW + rng.IntN(accsPerW), n: rng.IntN(connsPerAcc)}
				acc := accName(c.acct)
				inbox := inboxes[rng.IntN(len(inboxes))]
				switch rng.IntN(6) {
				case 0, 1:
					model[c] = ix.Update(acc, c, sub(s(inbox), nil))
				case 2:
					model[c] = ix.Update(acc, c, sub(nil, s(types[rng.IntN(len(types))])))
				case 3:
					model[c] = ix.Update(acc, c, unsubFn(inbox))
				case 4:
					ix.Remove(acc, c)
					delete(model, c)
				case 5:
					ix.RemoveInbox(acc, inbox)
					for mc, f := range model {
						if mc.acct == c.acct {
							model[mc] = f.WithoutInbox(inbox)
						}
					}
				}
				for mc, f := range model {
					if f.IsZero() {
						delete(model, mc)
					}
				}
			}
		})
	}
	var matched atomic.Int64
	for r := range readers {
		rwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			var dst []testConn
			seen := map[testConn]bool{}
			for !stop.Load() {
				a := rng.IntN(writers * accsPerW)
				acc, inbox, typ := accName(a), inboxes[rng.IntN(len(inboxes))], types[rng.IntN(len(types))]
				dst = ix.Match(dst[:0], acc, inbox, typ)
				clear(seen)
				for _, c := range dst {
					if c.acct != a {
						t.Errorf("Match(%s) returned %+v of another account", acc, c)
						return
					}
					if seen[c] {
						t.Errorf("Match(%s) returned %+v twice", acc, c)
						return
					}
					seen[c] = true
				}
				matched.Add(int64(len(dst)))
				// Has, Get and the counters may see a later snapshot than Match: called for the race
				// detector only.
				ix.Has(acc, inbox, typ)
				ix.Get(acc, testConn{acct: a})
				ix.Len()
				ix.Accounts()
			}
		})
	}
	wwg.Wait()
	stop.Store(true)
	rwg.Wait()
	if matched.Load() == 0 {
		t.Fatal("readers never matched anything")
	}

	conns, accounts := 0, map[int]bool{}
	for w := range writers {
		for c, f := range models[w] {
			conns++
			accounts[c.acct] = true
			if got, want := describe(ix.Get(accName(c.acct), c)), describe(f); got != want {
				t.Fatalf("%+v: index has %s, writer expected %s", c, got, want)
			}
		}
	}
	checkCounts(t, ix, conns, len(accounts))
}

// refFilter is the reference model of a subscription: PROTOCOL §4 spelled out with maps, sharing
// no code with Filter.
type refFilter struct {
	allInboxes bool
	inboxes    map[string]bool // the set, or under allInboxes the exclusion set
	allTypes   bool
	types      map[string]bool
}

func (r refFilter) subscribe(ids, types []string) refFilter {
	n := refFilter{allInboxes: r.allInboxes, inboxes: maps.Clone(r.inboxes), allTypes: r.allTypes, types: maps.Clone(r.types)}
	if n.inboxes == nil {
		n.inboxes = map[string]bool{}
	}
	if n.types == nil {
		n.types = map[string]bool{}
	}
	switch {
	case len(ids) == 0:
		if !n.allInboxes { // from a set to all; an exclusion set is kept
			clear(n.inboxes)
		}
		n.allInboxes = true
	case n.allInboxes:
		for _, id := range ids {
			delete(n.inboxes, id)
		}
	default:
		for _, id := range ids {
			n.inboxes[id] = true
		}
	}
	switch {
	case len(types) == 0:
		n.allTypes = true
		clear(n.types)
	case !n.allTypes:
		for _, ty := range types {
			n.types[ty] = true
		}
	}
	return n
}

// unsubscribe returns the new model, whether it still matches anything, and the ids removed
// (sorted, nil when none).
func (r refFilter) unsubscribe(ids []string) (refFilter, bool, []string) {
	if len(ids) == 0 {
		return refFilter{}, false, nil
	}
	n := r
	n.inboxes = maps.Clone(r.inboxes)
	if n.inboxes == nil {
		n.inboxes = map[string]bool{}
	}
	removed := map[string]bool{}
	for _, id := range ids {
		if r.allInboxes {
			if !n.inboxes[id] {
				removed[id] = true
			}
			n.inboxes[id] = true
		} else {
			if n.inboxes[id] {
				removed[id] = true
			}
			delete(n.inboxes, id)
		}
	}
	var rem []string
	if len(removed) > 0 {
		rem = slices.Sorted(maps.Keys(removed))
	}
	return n, n.allInboxes || len(n.inboxes) > 0, rem
}

func (r refFilter) withoutInbox(id string) (refFilter, bool) {
	n := r
	n.inboxes = maps.Clone(r.inboxes)
	delete(n.inboxes, id)
	return n, n.allInboxes || len(n.inboxes) > 0
}

func (r refFilter) matches(inbox, typ string) bool {
	return r.allInboxes != r.inboxes[inbox] && (r.allTypes || r.types[typ])
}

func (r refFilter) describe() string {
	keys := func(m map[string]bool) []string {
		if len(m) == 0 {
			return nil
		}
		return slices.Sorted(maps.Keys(m))
	}
	d := "inboxes="
	switch {
	case r.allInboxes && len(r.inboxes) > 0:
		d += fmt.Sprintf("all-%v", keys(r.inboxes))
	case r.allInboxes:
		d += "all"
	default:
		d += fmt.Sprintf("%v", keys(r.inboxes))
	}
	if r.allTypes {
		return d + " types=all"
	}
	return d + fmt.Sprintf(" types=%v", keys(r.types))
}

// TestIndexModel drives an Index and a reference model with the same random operations and
// compares every observable after each one.
func TestIndexModel(t *testing.T) {
	accounts := s("a0", "a1", "a2", "a3")
	inboxes := s("i0", "i1", "i2", "i3", "i4")
	types := s("t0", "t1", "t2")
	const conns = 6
	const ops = 2500

	rng := rand.New(rand.NewPCG(2026, 4))
	pick := func(from []string, max int) []string {
		n := rng.IntN(max + 1)
		out := make([]string, n)
		for i := range out {
			out[i] = from[rng.IntN(len(from))] // duplicates on purpose
		}
		return out
	}

	ix := New[int]()
	model := map[string]map[int]refFilter{}
	for _, a := range accounts {
		model[a] = map[int]refFilter{}
	}

	for op := range ops {
		acc := accounts[rng.IntN(len(accounts))]
		conn := rng.IntN(conns)
		var what string
		switch k := rng.IntN(10); {
		case k < 5:
			ids, tys := pick(inboxes, 3), pick(types, 2)
			what = fmt.Sprintf("Update(%s, %d, Subscribe(%q, %q))", acc, conn, ids, tys)
			got := ix.Update(acc, conn, sub(ids, tys))
			model[acc][conn] = model[acc][conn].subscribe(ids, tys)
			if d, want := describe(got), model[acc][conn].describe(); d != want {
				t.Fatalf("op %d %s returned %s, want %s", op, what, d, want)
			}
		case k < 8:
			ids := pick(inboxes, 2)
			what = fmt.Sprintf("Update(%s, %d, Unsubscribe(%q))", acc, conn, ids)
			var removed []string
			ix.Update(acc, conn, func(f Filter) Filter {
				nf, r := f.Unsubscribe(ids)
				removed = r
				return nf
			})
			nf, ok, want := model[acc][conn].unsubscribe(ids)
			if !slices.Equal(removed, want) {
				t.Fatalf("op %d %s: removed %q, want %q", op, what, removed, want)
			}
			if ok {
				model[acc][conn] = nf
			} else {
				delete(model[acc], conn)
			}
		case k < 9:
			what = fmt.Sprintf("Remove(%s, %d)", acc, conn)
			ix.Remove(acc, conn)
			delete(model[acc], conn)
		default:
			inbox := inboxes[rng.IntN(len(inboxes))]
			what = fmt.Sprintf("RemoveInbox(%s, %s)", acc, inbox)
			ix.RemoveInbox(acc, inbox)
			for c, r := range model[acc] {
				if nf, ok := r.withoutInbox(inbox); ok {
					model[acc][c] = nf
				} else {
					delete(model[acc], c)
				}
			}
		}

		total, live := 0, 0
		for _, a := range accounts {
			total += len(model[a])
			if len(model[a]) > 0 {
				live++
			}
			for c := range conns {
				want := "none"
				if r, ok := model[a][c]; ok {
					want = r.describe()
				}
				if got := describe(ix.Get(a, c)); got != want {
					t.Fatalf("op %d %s: Get(%s, %d) = %s, want %s", op, what, a, c, got, want)
				}
			}
			for _, inbox := range append(inboxes, "unknown") {
				for _, typ := range append(types, "unknown") {
					var want []int
					for c, r := range model[a] {
						if r.matches(inbox, typ) {
							want = append(want, c)
						}
					}
					slices.Sort(want)
					got := ix.Match(nil, a, inbox, typ)
					slices.Sort(got)
					if !slices.Equal(got, want) {
						t.Fatalf("op %d %s: Match(%s, %s, %s) = %v, want %v", op, what, a, inbox, typ, got, want)
					}
					if ix.Has(a, inbox, typ) != (len(want) > 0) {
						t.Fatalf("op %d %s: Has(%s, %s, %s) disagrees with Match", op, what, a, inbox, typ)
					}
				}
			}
		}
		if ix.Len() != total || ix.Accounts() != live {
			t.Fatalf("op %d %s: Len, Accounts = %d, %d; want %d, %d", op, what, ix.Len(), ix.Accounts(), total, live)
		}
	}
}
