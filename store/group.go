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
//
// Merging copies every batch into the merged one. That is cheap for small
// messages, which is what merging is for, but would hold a large message
// twice (and copy it once more for nothing: its own commit costs little
// next to its size), so a batch of groupAloneBytes or more is committed
// alone, by its caller, concurrently with the groups (Pebble's pipeline
// still shares the fsync).
const (
	groupCommitters = 4
	// groupMaxBatches bounds one group commit's requests.
	groupMaxBatches = 64
	// groupMaxBytes bounds one group commit's size, and so the memory of
	// the merged copy (a committer stops filling once it is reached).
	groupMaxBytes = 4 << 20
	// groupAloneBytes is the size from which a batch is not merged.
	groupAloneBytes = 256 << 10
)

type groupReq struct {
	b    *pebble.Batch
	done chan error
}

type groupCommitter struct {
	in   chan *groupReq
	wg   sync.WaitGroup
	once sync.Once

	// alone is held shared by the commits of large batches (commitAlone)
	// and by sends to in, and exclusively by close, which sets closed.
	alone  sync.RWMutex
	closed bool
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

// commit applies b (synced) together with whatever else is waiting (alone
// when it is large), and returns when it is durable. b is closed.
func (g *groupCommitter) commit(b *pebble.Batch) error {
	if len(b.Repr()) >= groupAloneBytes {
		return g.commitAlone(b)
	}
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

// commitAlone commits b (synced) in the caller's goroutine, and closes it.
// A panic from Pebble is raised here, as in commit.
func (g *groupCommitter) commitAlone(b *pebble.Batch) error {
	g.alone.RLock()
	defer g.alone.RUnlock()
	defer b.Close()
	if g.closed {
		return errStoreClosed
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cannot commit batch: %w", err)
	}
	return nil
}

// send queues r; false when the store was closed under the caller. It
// holds alone shared, so that close cannot close g.in under a send.
func (g *groupCommitter) send(r *groupReq) bool {
	g.alone.RLock()
	defer g.alone.RUnlock()
	if g.closed {
		return false
	}
	g.in <- r // the committers run until g.in is closed: never blocked for long
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
		size := 0
		for _, r := range reqs {
			size += len(r.b.Repr())
		}
		merged := db.NewBatchWithSize(size)
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

// close stops the committers after the requests already queued, and waits
// for the commits of large batches in progress.
func (g *groupCommitter) close() {
	g.alone.Lock()
	g.closed = true
	g.alone.Unlock()
	g.once.Do(func() { close(g.in) })
	g.wg.Wait()
}

// Sizing ingest batches (StoreInbound). A Pebble batch grows by doubling,
// copying its contents each time, so a batch of a large message is made at
// its final size instead.
const (
	// batchHeaderBytes is the batch header (batchrepr.HeaderLen).
	batchHeaderBytes = 12
	// directJSONBytes is the body size from which a message record is
	// encoded straight into the batch instead of into a buffer copied in.
	directJSONBytes = 64 << 10
)

// batchRecordBytes is what a Set of a key and a value of these lengths may
// take in a batch: its kind, two varints (reserved at their longest) and
// the bytes.
func batchRecordBytes(keyLen, valueLen int) int {
	return 1 + 2*5 + keyLen + valueLen
}

// newEventBytes is more than putNewEvent adds to a batch: the event, its
// state and its due entry at their longest (varints of 10 bytes), and 512
// bytes to spare. Too little would not fail, only make Pebble grow the
// batch by doubling.
func newEventBytes(e *Event, st EventState) int {
	event := 1 + 4*10 + len(e.AccountID) + len(e.InboxID) + len(e.Type) + len(e.MessageID)
	state := 1 + 4*10 + len(st.InboxID) + len(st.Type) + len(st.Status) + len(st.DeliveredVia) + 6*10 + 1
	return batchRecordBytes(len(pEvent)+len(e.ID), event) +
		batchRecordBytes(len(pEventState)+len(e.AccountID)+1+len(e.ID), state) +
		batchRecordBytes(len(pDue)+8+len(e.ID), len(e.AccountID)) + 512
}

// messageRecord is a message's JSON record on its way into a batch: encoded
// into buf for small bodies, or only measured (n bytes) and encoded into
// the batch by set.
type messageRecord struct {
	m   *Message
	buf []byte
	n   int
}

func newMessageRecord(m *Message, direct bool) messageRecord {
	bodies := len(m.BodyText) + len(m.BodyHTML)
	if !direct || bodies < directJSONBytes {
		return messageRecord{m: m, buf: appendMessageJSON(make([]byte, 0, 512+bodies+bodies/32), m)}
	}
	return messageRecord{m: m, n: messageJSONLen(m)}
}

func (r *messageRecord) size() int {
	if r.buf != nil {
		return len(r.buf)
	}
	return r.n
}

// set adds the record under k to b. false means that the encoding did not
// have the length measured: b then holds a wrong record and must be
// dropped.
func (r *messageRecord) set(b *pebble.Batch, k []byte) bool {
	if r.buf != nil {
		_ = b.Set(k, r.buf, nil)
		return true
	}
	op := b.SetDeferred(len(k), r.n)
	copy(op.Key, k)
	// op.Value's capacity runs on into the batch's free space: a longer
	// encoding would not reallocate, only show in its length.
	v := appendMessageJSON(op.Value[:0], r.m)
	if len(v) != r.n || (r.n > 0 && &v[0] != &op.Value[0]) {
		return false
	}
	_ = op.Finish()
	return true
}

// messageJSONLen is len(appendMessageJSON(nil, m)) without holding the
// encoding: the bodies are only measured (jsonStringLen).
func messageJSONLen(m *Message) int {
	short := *m
	short.BodyText = ""
	if m.BodyHTML != "" {
		short.BodyHTML = "x" // keeps the field, encoded as 3 bytes
	}
	n := len(appendMessageJSON(nil, &short)) - len(`""`) + jsonStringLen(m.BodyText)
	if m.BodyHTML != "" {
		n += jsonStringLen(m.BodyHTML) - len(`"x"`)
	}
	return n
}
