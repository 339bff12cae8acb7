package subs

import (
	"maps"
	"sync"
	"sync/atomic"
)

const (
	// shardCount is the number of shards of an Index, each with its writer lock. 64 keeps writer
	// contention low on the machines we run on.
	shardCount = 64
	// bucketsPerShard is the number of copy-on-write account maps per shard. Adding or dropping an
	// account copies one of them, so the cost of a new account is ~accounts/4096 map entries.
	// With one map per shard, adding 300,000 accounts one by one took 5.5 minutes (quadratic, and
	// every copy garbage); see BenchmarkUpdate/new-account.
	bucketsPerShard = 64
)

// Index maps (account, connection) to the connection's [Filter] and answers "which connections of
// this account want this event". C identifies a connection; typically a pointer to it.
//
// Only connections with a non-zero Filter are stored. The zero Index is empty and ready for use;
// an Index must not be copied after first use. See the package documentation for the concurrency
// contract.
type Index[C comparable] struct {
	shards [shardCount]shard[C]

	conns    atomic.Int64 // entries over all accounts
	accounts atomic.Int64 // accounts with at least one entry
}

// shard holds the accounts whose id hashes to it, spread over buckets.
//
// Invariants, established under mu and relied on by lock-free readers:
//   - a map published in a bucket is never written again; adding or dropping an account publishes
//     a copy;
//   - every account in a published map has at least one entry;
//   - an entry list published in an account is never written again; every change publishes a copy.
type shard[C comparable] struct {
	mu sync.Mutex // serialises the writers of this shard; readers never take it

	buckets [bucketsPerShard]bucket[C]
}

// bucket is one copy-on-write account map.
type bucket[C comparable] struct {
	// accounts is read without the shard's mu; it is replaced only with mu held. nil means none.
	accounts atomic.Pointer[map[string]*accountSubs[C]]

	// peak is the most accounts the map has held since it was last built from scratch; guarded by
	// the shard's mu. Copies are made with maps.Clone, which keeps the table size of the source, so
	// once the accounts fall to a quarter of peak the map is rebuilt to its size: memory follows
	// the live accounts, and each rebuild is paid for by the removals before it.
	peak int
}

// accountSubs holds the subscribed connections of one account.
type accountSubs[C comparable] struct {
	// entries is read without the shard's mu; it is replaced only with mu held. Never nil nor empty
	// while the account is in its bucket's map.
	entries atomic.Pointer[[]entry[C]]
}

type entry[C comparable] struct {
	conn   C
	filter Filter // never zero
}

// New returns an empty Index. Its fixed cost is the shards: about 65 KiB.
func New[C comparable]() *Index[C] {
	return &Index[C]{}
}

// slot is where an account lives: its shard (for writers) and that shard's bucket (its map).
type slot[C comparable] struct {
	sh     *shard[C]
	bucket *bucket[C]
}

func (ix *Index[C]) slotOf(account string) slot[C] {
	h := hashAccount(account)
	sh := &ix.shards[h/bucketsPerShard]
	return slot[C]{sh: sh, bucket: &sh.buckets[h%bucketsPerShard]}
}

// hashAccount returns the account's bucket number over the whole Index, in [0,
// shardCount*bucketsPerShard): FNV-1a (32 bit), written out because hash/fnv would allocate,
// xor-folded down to 12 bits because FNV's low bits alone depend only on the low bits of each byte
// (so "acc_0" and "acc_p" would always share a shard).
func hashAccount(account string) uint32 {
	const (
		offset32 = 2166136261
		prime32  = 16777619
		mask     = shardCount*bucketsPerShard - 1
	)
	h := uint32(offset32)
	for i := 0; i < len(account); i++ {
		h ^= uint32(account[i])
		h *= prime32
	}
	return (h ^ h>>12 ^ h>>24) & mask
}

// lookup returns the published entries of the account (nil when it has none). Lock-free.
func (s slot[C]) lookup(account string) []entry[C] {
	m := s.bucket.accounts.Load()
	if m == nil {
		return nil
	}
	a := (*m)[account]
	if a == nil {
		return nil
	}
	return *a.entries.Load()
}

// Match appends to dst every connection of the account whose Filter matches (inbox, typ), in the
// order the connections first subscribed, and returns the extended slice. It takes no lock and
// does not allocate when dst has the capacity.
func (ix *Index[C]) Match(dst []C, account, inbox, typ string) []C {
	es := ix.slotOf(account).lookup(account)
	for i := range es {
		if es[i].filter.Matches(inbox, typ) {
			dst = append(dst, es[i].conn)
		}
	}
	return dst
}

// Has reports whether at least one connection of the account matches (inbox, typ). It takes no
// lock and does not allocate.
func (ix *Index[C]) Has(account, inbox, typ string) bool {
	es := ix.slotOf(account).lookup(account)
	for i := range es {
		if es[i].filter.Matches(inbox, typ) {
			return true
		}
	}
	return false
}

// Get returns the connection's Filter; the zero Filter when it has none. It takes no lock.
func (ix *Index[C]) Get(account string, conn C) Filter {
	for _, e := range ix.slotOf(account).lookup(account) {
		if e.conn == conn {
			return e.filter
		}
	}
	return Filter{}
}

// Update applies fn to the connection's current Filter (the zero Filter if it has none) and
// publishes the result atomically; a result that IsZero removes the connection. It returns the new
// Filter (the zero Filter when the connection was removed), which is what Get returns from then on
// until the next write.
//
// fn runs exactly once, with the shard's lock held: it must be quick and must not call the Index.
// This is what makes a read-modify-write of one connection atomic against RemoveInbox and other
// writers of the account.
func (ix *Index[C]) Update(account string, conn C, fn func(Filter) Filter) Filter {
	sl := ix.slotOf(account)
	sl.sh.mu.Lock()
	defer sl.sh.mu.Unlock()

	old := sl.lookup(account)
	i := indexOf(old, conn)
	var cur Filter
	if i >= 0 {
		cur = old[i].filter
	}
	nf := fn(cur)
	if nf.IsZero() {
		if i >= 0 {
			ix.publish(sl, account, deleteEntry(old, i))
		}
		return Filter{}
	}
	var es []entry[C]
	if i >= 0 {
		es = make([]entry[C], len(old))
		copy(es, old)
		es[i].filter = nf
	} else {
		es = make([]entry[C], len(old), len(old)+1)
		copy(es, old)
		es = append(es, entry[C]{conn: conn, filter: nf})
	}
	ix.publish(sl, account, es)
	return nf
}

// Remove drops the connection (it closed). A connection the Index does not hold is ignored.
func (ix *Index[C]) Remove(account string, conn C) {
	sl := ix.slotOf(account)
	sl.sh.mu.Lock()
	defer sl.sh.mu.Unlock()

	old := sl.lookup(account)
	if i := indexOf(old, conn); i >= 0 {
		ix.publish(sl, account, deleteEntry(old, i))
	}
}

// RemoveInbox applies [Filter.WithoutInbox] to every Filter of the account (the inbox was deleted);
// connections left with a zero Filter are removed. An account whose Filters never name the inbox is
// left untouched, without a copy.
func (ix *Index[C]) RemoveInbox(account, inbox string) {
	sl := ix.slotOf(account)
	sl.sh.mu.Lock()
	defer sl.sh.mu.Unlock()

	old := sl.lookup(account)
	var es []entry[C] // nil until the first change
	for i, e := range old {
		nf, changed := e.filter.withoutInbox(inbox)
		if changed && es == nil {
			es = make([]entry[C], i, len(old))
			copy(es, old[:i])
		}
		if es != nil && !nf.IsZero() {
			es = append(es, entry[C]{conn: e.conn, filter: nf})
		}
	}
	if es != nil {
		ix.publish(sl, account, es)
	}
}

// Len returns the number of connections with a non-zero Filter.
func (ix *Index[C]) Len() int { return int(ix.conns.Load()) }

// Accounts returns the number of accounts with at least one such connection.
func (ix *Index[C]) Accounts() int { return int(ix.accounts.Load()) }

// publish makes es the entry list of the account, adding the account to its bucket or dropping it
// when es is empty, and keeps the counters. The shard's mu must be held; es must be a fresh slice
// that nobody else holds.
func (ix *Index[C]) publish(sl slot[C], account string, es []entry[C]) {
	b := sl.bucket
	var m map[string]*accountSubs[C]
	if p := b.accounts.Load(); p != nil {
		m = *p
	}
	a := m[account]
	var before int
	if a != nil {
		before = len(*a.entries.Load())
	}
	ix.conns.Add(int64(len(es) - before))

	switch {
	case a != nil && len(es) > 0:
		a.entries.Store(&es)
	case a != nil: // the account's last connection went: drop the account
		switch left := len(m) - 1; {
		case left == 0:
			b.accounts.Store(nil)
			b.peak = 0
		case left <= b.peak/4:
			nm := make(map[string]*accountSubs[C], left)
			for k, v := range m {
				if k != account {
					nm[k] = v
				}
			}
			b.accounts.Store(&nm)
			b.peak = left
		default:
			// maps.Clone copies the table as it is, without rehashing (so without reading) the keys.
			nm := maps.Clone(m)
			delete(nm, account)
			b.accounts.Store(&nm)
		}
		ix.accounts.Add(-1)
	case len(es) > 0: // a new account
		a = new(accountSubs[C])
		a.entries.Store(&es)
		nm := maps.Clone(m)
		if nm == nil {
			nm = make(map[string]*accountSubs[C], 1)
		}
		nm[account] = a
		b.peak = max(b.peak, len(nm))
		b.accounts.Store(&nm)
		ix.accounts.Add(1)
	}
}

// indexOf returns the position of conn in es, or -1.
func indexOf[C comparable](es []entry[C], conn C) int {
	for i := range es {
		if es[i].conn == conn {
			return i
		}
	}
	return -1
}

// deleteEntry returns a fresh copy of es without es[i]; es may be published, so it is not touched.
func deleteEntry[C comparable](es []entry[C], i int) []entry[C] {
	out := make([]entry[C], 0, len(es)-1)
	out = append(out, es[:i]...)
	return append(out, es[i+1:]...)
}
