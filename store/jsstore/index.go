package jsstore

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// Headers of an event record in streamEvents.
const (
	hAccount    = "Mw-Acc"
	hInbox      = "Mw-Inbox"
	hType       = "Mw-Type"
	hMessage    = "Mw-Msg"
	hRFCID      = "Mw-Rfc-Id" // the message's RFC 5322 Message-ID (threading)
	hThread     = "Mw-Thread"
	hHeadLen    = "Mw-Head-Len"    // the body is the payload's head, its tail, then the message record
	hPayloadLen = "Mw-Payload-Len" // head and tail together
	hEvent      = "Mw-Evt"
	hDue        = "Mw-Due" // a due message's time (Unix ms)
	hMsgID      = "Nats-Msg-Id"
	hSequence   = "Nats-Sequence"
)

// entry is one event in the node's index of the log.
type entry struct {
	seq   uint64
	id    string
	acc   string
	inbox string
	typ   string
	msg   string
	blobs []int // the message record's parts kept as blobs

	thread string // its thread id (threads.go), "" for none
}

// index is the node's in-memory index of the event log, built by an
// ordered consumer over streamEvents from its start: every event's ids
// and position, each account's events in log order, each inbox's
// messages, the thread of each RFC Message-ID, and the delivery state of
// every event that has one (a watch over bucketState). It is always a
// prefix of the log: an event is in it only once every earlier one is.
//
// Events stored after the node started are also handed, with their
// payload and in log order, to the OnStored watchers (the node's fan-out)
// before the applied position passes them.
type index struct {
	s *Store

	mu       sync.RWMutex
	byEvt    map[string]*entry
	byMsg    map[string]*entry
	byAcc    map[string][]*entry // log order
	byInbox  map[string][]*entry // log order
	threads  map[string]string   // inbox + " " + RFC Message-ID -> thread id
	byThread map[string]*thread  // thread id -> its events (threads.go)
	deleted  map[string]struct{} // inbox ids deleted: their late events are dropped
	states   map[string]stateRec
	intern   map[string]string
	applied  atomic.Uint64 // the last stream sequence applied
	pushed   atomic.Uint64 // the last sequence handed to the watchers
	cond     *sync.Cond
	watchers atomic.Pointer[[]func([]store.Event)]
	watchMu  sync.Mutex

	payloads *payloadCache

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type stateRec struct {
	st  store.EventState
	rev uint64
}

func newIndex(s *Store) *index {
	x := &index{s: s, byEvt: map[string]*entry{}, byMsg: map[string]*entry{}, byAcc: map[string][]*entry{},
		byInbox: map[string][]*entry{}, threads: map[string]string{}, deleted: map[string]struct{}{},
		states: map[string]stateRec{}, intern: map[string]string{}, payloads: newPayloadCache(64 << 20)}
	x.cond = sync.NewCond(&x.mu)
	x.byThread = map[string]*thread{}
	return x
}

// start reads the log's history (headers only: the index needs ids, not
// payloads), then follows it live with payloads. It returns once the
// history up to the log's end at start is in.
func (x *index) start() error {
	ctx, cancel := context.WithCancel(x.s.ctx)
	x.cancel = cancel
	info, err := x.s.events.Info(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	end := info.State.LastSeq
	if err := x.watchStates(ctx); err != nil {
		return err
	}
	if end > 0 && info.State.Msgs > 0 {
		t0 := time.Now()
		if err := x.catchUp(ctx, end); err != nil {
			return err
		}
		x.s.log.Info("event log index loaded", "events", x.size(), "last_seq", end, "took", time.Since(t0).Round(time.Millisecond))
	}
	x.applied.Store(end)
	x.pushed.Store(end)
	return x.follow(ctx, end+1)
}

// catchUp reads the headers of every event up to sequence end.
func (x *index) catchUp(ctx context.Context, end uint64) error {
	c, err := x.s.js.OrderedConsumer(ctx, streamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjEvent + ".>"}, HeadersOnly: true})
	if err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	done := make(chan struct{})
	var once sync.Once
	cc, err := c.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		if md.Sequence.Stream <= end {
			x.add(md.Sequence.Stream, m.Headers(), nil)
		}
		if md.Sequence.Stream >= end || md.NumPending == 0 {
			once.Do(func() { close(done) })
		}
	})
	if err != nil {
		return fmt.Errorf("cannot read the event log: %w", err)
	}
	defer cc.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow applies the log live from sequence from, payloads included.
func (x *index) follow(ctx context.Context, from uint64) error {
	c, err := x.s.js.OrderedConsumer(ctx, streamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjEvent + ".>"}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return fmt.Errorf("cannot follow the event log: %w", err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		seq := md.Sequence.Stream
		if seq <= x.applied.Load() {
			return // a reset ordered consumer may repeat
		}
		ev, ok := x.add(seq, m.Headers(), m.Data())
		if ok {
			if fns := x.watchers.Load(); fns != nil {
				evs := []store.Event{ev}
				for _, fn := range *fns {
					fn(evs)
				}
			}
		}
		x.pushed.Store(seq)
		x.mu.Lock()
		x.applied.Store(seq)
		x.cond.Broadcast()
		x.mu.Unlock()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) && ctx.Err() == nil {
			x.s.log.Debug("event log consumer", "error", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("cannot follow the event log: %w", err)
	}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		<-ctx.Done()
		cc.Stop()
	}()
	return nil
}

func (x *index) stop() {
	if x.cancel != nil {
		x.cancel()
	}
	x.wg.Wait()
	x.mu.Lock()
	x.cond.Broadcast()
	x.mu.Unlock()
}

func (x *index) in(s string) string {
	if v, ok := x.intern[s]; ok {
		return v
	}
	x.intern[s] = s
	return s
}

// add indexes one event record; with data (a live event) it returns the
// event with its payload.
func (x *index) add(seq uint64, h nats.Header, data []byte) (store.Event, bool) {
	id := h.Get(hMsgID)
	e := &entry{seq: seq, id: id, msg: h.Get(hMessage)}
	if b := h.Get(hBlobs); b != "" {
		for _, f := range strings.Split(b, ",") {
			if n, err := strconv.Atoi(f); err == nil {
				e.blobs = append(e.blobs, n)
			}
		}
	}
	x.mu.Lock()
	e.acc, e.inbox, e.typ = x.in(h.Get(hAccount)), x.in(h.Get(hInbox)), x.in(h.Get(hType))
	if _, gone := x.deleted[e.inbox]; gone || id == "" {
		x.mu.Unlock()
		return store.Event{}, false
	}
	if _, dup := x.byEvt[id]; dup {
		x.mu.Unlock()
		return store.Event{}, false
	}
	x.byEvt[id] = e
	x.byMsg[e.msg] = e
	x.byAcc[e.acc] = append(x.byAcc[e.acc], e)
	x.byInbox[e.inbox] = append(x.byInbox[e.inbox], e)
	if rfc := h.Get(hRFCID); rfc != "" {
		x.threads[e.inbox+" "+rfc] = h.Get(hThread)
	}
	x.addThreadLocked(e, h)
	x.mu.Unlock()
	if data == nil {
		return store.Event{}, false
	}
	ev := store.Event{ID: id, AccountID: e.acc, InboxID: e.inbox, Type: e.typ, MessageID: e.msg}
	payload, _, ok := splitRecord(h, data)
	if !ok {
		x.s.log.Error("an event's body does not match its header: not pushed", "event", id)
		return store.Event{}, false
	}
	// A copy: the record after it (raw bytes, attachments) is not kept.
	payload = bytes.Clone(payload)
	ev.Head, ev.Tail = splitPayload(h, payload)
	x.payloads.put(id, payload)
	return ev, true
}

// splitRecord splits an event message's body into the payload and the
// message record after it; false when the body does not match its
// header (it is then neither pushed nor read).
func splitRecord(h nats.Header, data []byte) (payload, rec []byte, ok bool) {
	v := h.Get(hPayloadLen)
	if v == "" {
		return data, nil, true // no record (not a message event)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > len(data) {
		return nil, nil, false
	}
	return data[:n:n], data[n:], true
}

// splitPayload splits a payload into its head and tail.
func splitPayload(h nats.Header, payload []byte) (head, tail []byte) {
	n, err := strconv.Atoi(h.Get(hHeadLen))
	if err != nil || n < 0 || n > len(payload) {
		return payload, nil
	}
	return payload[:n:n], payload[n:]
}

// dropInbox forgets a deleted inbox's events and messages.
func (x *index) dropInbox(inboxID string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.deleted[inboxID] = struct{}{}
	var evts []string
	var acc string
	for _, e := range x.byInbox[inboxID] {
		evts = append(evts, e.id)
		delete(x.byEvt, e.id)
		delete(x.byMsg, e.msg)
		delete(x.states, e.id)
		delete(x.byThread, e.thread)
		acc = e.acc
	}
	delete(x.byInbox, inboxID)
	if acc != "" {
		x.byAcc[acc] = slices.DeleteFunc(x.byAcc[acc], func(e *entry) bool { return e.inbox == inboxID })
	}
	for k := range x.threads {
		if len(k) > len(inboxID) && k[:len(inboxID)] == inboxID && k[len(inboxID)] == ' ' {
			delete(x.threads, k)
		}
	}
	return evts
}

// sweep forgets events older than the log's retention (the streams drop
// them by age).
func (x *index) sweep(before time.Time) int {
	cut := ids.NewAt(ids.Event, before) // ids order by time
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for acc, es := range x.byAcc {
		i := 0
		for i < len(es) && es[i].id < cut {
			e := es[i]
			delete(x.byEvt, e.id)
			delete(x.byMsg, e.msg)
			delete(x.states, e.id)
			x.sweepThreadLocked(e)
			i++
		}
		if i > 0 {
			n += i
			x.byAcc[acc] = slices.Clone(es[i:])
		}
	}
	for inbox, es := range x.byInbox {
		i := 0
		for i < len(es) && es[i].id < cut {
			i++
		}
		if i > 0 {
			x.byInbox[inbox] = slices.Clone(es[i:])
		}
	}
	return n
}

func (x *index) isDeleted(inboxID string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.deleted[inboxID]
	return ok
}

func (x *index) size() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byEvt)
}

func (x *index) appliedSeq() uint64 { return x.applied.Load() }

func (x *index) event(id string) (entry, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.byEvt[id]
	if !ok {
		return entry{}, false
	}
	return *e, true
}

func (x *index) message(id string) (entry, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.byMsg[id]
	if !ok {
		return entry{}, false
	}
	return *e, true
}

// waitApplied waits until the index has applied sequence seq (false:
// not within d).
func (x *index) waitApplied(seq uint64, d time.Duration) bool {
	if x.applied.Load() >= seq {
		return true
	}
	deadline := time.Now().Add(d)
	x.mu.Lock()
	defer x.mu.Unlock()
	for x.applied.Load() < seq {
		if time.Now().After(deadline) || x.s.ctx.Err() != nil {
			return false
		}
		tm := time.AfterFunc(time.Until(deadline), func() { x.mu.Lock(); x.cond.Broadcast(); x.mu.Unlock() })
		x.cond.Wait()
		tm.Stop()
	}
	return true
}

// catchUpTo waits until the index holds every event the log held when
// called: used when an id is not (yet) here, e.g. an event stored on
// another node a moment ago.
func (x *index) catchUpTo() bool {
	ctx, cancel := x.s.opCtx()
	defer cancel()
	info, err := x.s.events.Info(ctx)
	if err != nil {
		return false
	}
	return x.waitApplied(info.State.LastSeq, catchUpWait)
}

// recent reports whether an id was made within the last minute (only
// then can a missing id still be on its way to this node).
func recent(prefix, id string) bool {
	t, ok := ids.Time(prefix, id)
	return ok && time.Since(t) < time.Minute
}

// eventWait is event, waiting for the log when the id is recent and not
// in the index yet.
func (x *index) eventWait(id string) (entry, bool) {
	if e, ok := x.event(id); ok {
		return e, true
	}
	if recent(ids.Event, id) && x.catchUpTo() {
		return x.event(id)
	}
	return entry{}, false
}

func (x *index) messageWait(id string) (entry, bool) {
	if e, ok := x.message(id); ok {
		return e, true
	}
	if recent(ids.Message, id) && x.catchUpTo() {
		return x.message(id)
	}
	return entry{}, false
}

// watchStates keeps x.states current from bucketState.
func (x *index) watchStates(ctx context.Context) error {
	w, err := x.s.stateKV.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("cannot watch delivery states: %w", err)
	}
	ready := make(chan struct{})
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		defer func() { _ = w.Stop() }()
		once := sync.Once{}
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					once.Do(func() { close(ready) })
					continue
				}
				x.applyState(e)
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(x.s.opts.ConnectTimeout):
		return errors.New("cannot load delivery states: timed out")
	}
}

func (x *index) applyState(e jetstream.KeyValueEntry) {
	id := e.Key()
	x.mu.Lock()
	defer x.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(x.states, id)
		return
	}
	if old, ok := x.states[id]; ok && old.rev >= e.Revision() {
		return
	}
	v, err := decodeStateValue(e.Value())
	if err != nil {
		return
	}
	v.st.InboxID, v.st.Type = x.in(v.st.InboxID), x.in(v.st.Type)
	x.states[id] = stateRec{st: v.st, rev: e.Revision()}
}

// stateOf is an event's state as this node last heard it (the initial
// state when it had no attempt yet).
func (x *index) stateOfLocked(e *entry) store.EventState {
	if r, ok := x.states[e.id]; ok {
		return r.st
	}
	return x.s.initialState(e.id, e.inbox, e.typ)
}

// payloadCache keeps recent events' payloads (a replay after a reconnect
// reads them from here, not from the stream), bounded in bytes.
type payloadCache struct {
	mu    sync.Mutex
	max   int
	bytes int
	ll    *list.List
	m     map[string]*list.Element
}

type cached struct {
	id   string
	data []byte
}

func newPayloadCache(max int) *payloadCache {
	return &payloadCache{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *payloadCache) put(id string, data []byte) {
	if len(data) > c.max/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[id]; ok {
		return
	}
	c.m[id] = c.ll.PushFront(&cached{id: id, data: data})
	c.bytes += len(data)
	for c.bytes > c.max {
		el := c.ll.Back()
		v := el.Value.(*cached)
		c.ll.Remove(el)
		delete(c.m, v.id)
		c.bytes -= len(v.data)
	}
}

func (c *payloadCache) get(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[id]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cached).data, true
}
