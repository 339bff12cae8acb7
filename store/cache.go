package store

import "sync"

// genCache caches values read from the database, valid while a generation
// counter has not moved. A reader takes the generation before it reads the
// database and offers the value with it; a writer bumps the generation
// after its commit. So a value read before a change is never served after
// it: either the bump comes first (the offer is refused) or the bump
// clears the entry (it was offered before). Bounded: at max entries the
// cache starts over.
type genCache[V any] struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]V
	max int
}

func newGenCache[V any](max int) *genCache[V] {
	return &genCache[V]{m: make(map[string]V), max: max}
}

func (c *genCache[V]) get(gen uint64, k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		clear(c.m)
		c.gen = gen
	}
	v, ok := c.m[k]
	return v, ok
}

func (c *genCache[V]) put(gen uint64, k string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // something changed since the value was read
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
}

// Cache sizes (entries): the API keys and inboxes in recent use.
const (
	keyCacheMax   = 100_000
	inboxCacheMax = 100_000
)
