package store

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Group commit for ingest. Pebble already shares one fsync among concurrent
// synced commits, but each commit still pays the commit pipeline's
// serialized preparation and its own memtable application; merging the
// batches of concurrent requests into one commit roughly doubles durable
// ingest here (see docs/BENCHMARKS.md). A few committers run at once so
// memtable application stays parallel; each takes every request waiting
// when it becomes free, so a lone request is committed at once (no added
// latency) and a burst is committed in a few large batches.
const (
	groupCommitters = 4
	// groupMaxBatches bounds one group commit's requests.
	groupMaxBatches = 64
	// groupMaxBytes bounds one group commit's size (a group with a large
	// message commits early).
	groupMaxBytes = 16 << 20
)

type groupReq struct {
	b    *pebble.Batch
	done chan error
}

type groupCommitter struct {
	in   chan *groupReq
	wg   sync.WaitGroup
	once sync.Once
}

func newGroupCommitter(db *pebble.DB) *groupCommitter {
	g := &groupCommitter{in: make(chan *groupReq, 4*groupMaxBatches)}
	for i := 0; i < groupCommitters; i++ {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.run(db) }()
	}
	return g
}

var errStoreClosed = errors.New("store is closed")

// commit applies b (synced) together with whatever else is waiting, and
// returns when it is durable. b is closed.
func (g *groupCommitter) commit(b *pebble.Batch) error {
	r := &groupReq{b: b, done: make(chan error, 1)}
	if !g.send(r) {
		_ = b.Close()
		return errStoreClosed
	}
	err := <-r.done
	var pe *commitPanic
	if errors.As(err, &pe) {
		// Pebble reported a fatal error (its logger panics, see OnFatal):
		// raise it where a direct commit would have, in the caller.
		panic(pe.v)
	}
	return err
}

// send queues r; false when the store was closed under the caller.
func (g *groupCommitter) send(r *groupReq) (ok bool) {
	defer func() {
		if recover() != nil { // send on the closed channel
			ok = false
		}
	}()
	g.in <- r
	return true
}

// commitPanic carries a panic from a group commit to its callers.
type commitPanic struct{ v any }

func (p *commitPanic) Error() string { return fmt.Sprint("panic in commit: ", p.v) }

func (g *groupCommitter) run(db *pebble.DB) {
	reqs := make([]*groupReq, 0, groupMaxBatches)
	for first := range g.in {
		reqs = append(reqs[:0], first)
		size := len(first.b.Repr())
	fill:
		for len(reqs) < groupMaxBatches && size < groupMaxBytes {
			select {
			case r, ok := <-g.in:
				if !ok {
					break fill
				}
				reqs = append(reqs, r)
				size += len(r.b.Repr())
			default:
				break fill
			}
		}
		g.commitGroup(db, reqs)
	}
}

func (g *groupCommitter) commitGroup(db *pebble.DB, reqs []*groupReq) {
	var err error
	defer func() {
		if v := recover(); v != nil {
			for _, r := range reqs {
				_ = r.b.Close()
				r.done <- &commitPanic{v}
			}
		}
	}()
	if len(reqs) == 1 {
		err = reqs[0].b.Commit(pebble.Sync)
	} else {
		merged := db.NewBatch()
		for _, r := range reqs {
			if err = merged.Apply(r.b, nil); err != nil {
				break
			}
		}
		if err == nil {
			err = merged.Commit(pebble.Sync)
		}
		_ = merged.Close()
	}
	if err != nil {
		err = fmt.Errorf("cannot commit batch: %w", err)
	}
	for _, r := range reqs {
		_ = r.b.Close()
		r.done <- err
	}
}

// close stops the committers after the requests already queued.
func (g *groupCommitter) close() {
	g.once.Do(func() { close(g.in) })
	g.wg.Wait()
}
