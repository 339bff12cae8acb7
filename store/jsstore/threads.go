package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// Threads (store.Threads), as the Pebble store has them (store/threads.go),
// from what every node already keeps:
//
//   - the node's index of the log keeps each thread's events in log order
//     (byThread, from the Mw-Thread header every message's event carries),
//     with the thread's account, inbox and subject (the Mw-Subject header
//     of its first message). The figures are derived: messageCount is the
//     number of its events, lastMessageAt the time of the last one's
//     message id, createdAt the first one's. A thread list reads no
//     message record.
//   - read state is a mark per thread in bucketThreads, watched by every
//     node into memory: the stream sequence of the thread's last message
//     when it was marked read (no key: unread). The thread is read while
//     its last message is not after the mark, so a new message makes it
//     unread without a write at ingest. (Pebble's mark holds the message
//     count instead; a sequence also stays right when the log's retention
//     drops a thread's oldest messages.) A mark outlives nothing it
//     covers: the bucket keeps a key for the log's retention, and every
//     message a mark covers was stored before the mark was written.
//
// Read-your-writes across nodes: a read of read state first waits for
// this node's watch to reach the bucket's last revision (asked of the
// stream leader), so a mark written through another node is seen.

// hSubject is a threaded message's subject, quoted (strconv.Quote: a
// header value cannot hold line breaks, and keeps no edge spaces) and
// cut to maxSubjectHeader bytes; a cut value ends in "+" after the quote,
// and the thread's subject is then read from its first message record.
const (
	hSubject         = "Mw-Subject"
	maxSubjectHeader = 256
)

// subjectHeader is the Mw-Subject value of a subject: at most
// maxSubjectHeader bytes of it (cut at a character boundary), at most
// 4 bytes of header per byte of subject (strconv.Quote's escapes), so
// about 1 KiB at worst, within the 8 KiB appendOne leaves for headers.
func subjectHeader(subject string) string {
	if len(subject) <= maxSubjectHeader {
		return strconv.Quote(subject)
	}
	cut := maxSubjectHeader
	for cut > 0 && !utf8.RuneStart(subject[cut]) {
		cut--
	}
	return strconv.Quote(subject[:cut]) + "+"
}

// parseSubjectHeader decodes subjectHeader's value: whole is false when
// the value was cut or is missing (an event stored before the header).
func parseSubjectHeader(v string) (subject string, whole bool) {
	if v == "" {
		return "", false
	}
	whole = !strings.HasSuffix(v, "+")
	if !whole {
		v = v[:len(v)-1]
	}
	s, err := strconv.Unquote(v)
	if err != nil {
		return "", false
	}
	return s, whole
}

// thread is a thread in the node's index.
type thread struct {
	id, acc, inbox string
	es             []*entry // log order
	subject        string
	subjectWhole   bool // subject is the first message's whole subject
}

// addThreadLocked adds an indexed event to its thread (x.mu held).
func (x *index) addThreadLocked(e *entry, h nats.Header) {
	id := h.Get(hThread)
	if id == "" || e.msg == "" {
		return
	}
	t := x.byThread[id]
	if t == nil {
		t = &thread{id: id, acc: e.acc, inbox: e.inbox}
		t.subject, t.subjectWhole = parseSubjectHeader(h.Get(hSubject))
		x.byThread[id] = t
	}
	e.thread = t.id
	t.es = append(t.es, e)
}

// sweepThreadLocked removes a swept event from its thread (x.mu held):
// sweep drops the oldest events, so it is the thread's first.
func (x *index) sweepThreadLocked(e *entry) {
	t := x.byThread[e.thread]
	if t == nil {
		return
	}
	if len(t.es) > 0 && t.es[0] == e {
		t.es = t.es[1:]
	} else {
		for i, o := range t.es {
			if o == e {
				t.es = append(t.es[:i:i], t.es[i+1:]...)
				break
			}
		}
	}
	if len(t.es) == 0 {
		delete(x.byThread, e.thread)
	}
}

// threadView is what a thread's answers need of the index, copied out
// under its lock.
type threadView struct {
	id, acc, inbox string
	count          int
	first, last    entry
	subject        string
	subjectWhole   bool
}

func (x *index) viewLocked(t *thread) threadView {
	return threadView{id: t.id, acc: t.acc, inbox: t.inbox, count: len(t.es), first: *t.es[0], last: *t.es[len(t.es)-1],
		subject: t.subject, subjectWhole: t.subjectWhole}
}

// threadOf returns a thread's view; when the id is recent and not here
// yet (a thread started through another node a moment ago) it waits for
// the log first.
func (x *index) threadOf(id string) (threadView, bool) {
	get := func() (threadView, bool) {
		x.mu.RLock()
		defer x.mu.RUnlock()
		t := x.byThread[id]
		if t == nil || len(t.es) == 0 {
			return threadView{}, false
		}
		return x.viewLocked(t), true
	}
	if v, ok := get(); ok {
		return v, true
	}
	if recent(ids.Thread, id) && x.catchUpTo() {
		return get()
	}
	return threadView{}, false
}

// subjectOf completes a view's subject from its first message record
// when the header had not all of it, and keeps it in the index.
func (s *Store) subjectOf(v *threadView) error {
	if v.subjectWhole {
		return nil
	}
	m, _, err := s.messageOf(v.first)
	if errors.Is(err, store.ErrNotFound) {
		return nil // purged a moment ago: the cut subject will do
	}
	if err != nil {
		return err
	}
	v.subject, v.subjectWhole = m.Subject, true
	x := s.idx
	x.mu.Lock()
	if t := x.byThread[v.id]; t != nil && len(t.es) > 0 && t.es[0].id == v.first.id {
		t.subject, t.subjectWhole = m.Subject, true
	}
	x.mu.Unlock()
	return nil
}

func (v *threadView) thread(read bool) store.Thread {
	created, _ := ids.Time(ids.Message, v.first.msg)
	last, _ := ids.Time(ids.Message, v.last.msg)
	return store.Thread{ID: v.id, InboxID: v.inbox, AccountID: v.acc, Subject: v.subject, IsRead: read,
		MessageCount: v.count, LastMessageAt: last, CreatedAt: created}
}

// ListThreads implements store.Threads: the inbox's threads, latest
// activity first, from the index (O(events of the inbox), as
// ListMessages).
func (s *Store) ListThreads(inboxID string, f store.ThreadFilter, p store.Page) ([]store.Thread, int, error) {
	s.marks.sync()
	x := s.idx
	x.mu.RLock()
	es := x.byInbox[inboxID]
	seen := map[string]bool{}
	var views []threadView
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		if e.thread == "" || seen[e.thread] {
			continue
		}
		seen[e.thread] = true
		if t := x.byThread[e.thread]; t != nil && len(t.es) > 0 {
			views = append(views, x.viewLocked(t))
		}
	}
	x.mu.RUnlock()
	var out []store.Thread
	total := 0
	for i := range views {
		v := &views[i]
		read := s.marks.covers(v.id, v.last.seq)
		if f.IsRead != nil && *f.IsRead != read {
			continue
		}
		if total >= p.Offset && (p.Limit <= 0 || len(out) < p.Limit) {
			if err := s.subjectOf(v); err != nil {
				return nil, 0, fmt.Errorf("cannot list threads: %w", err)
			}
			out = append(out, v.thread(read))
		}
		total++
	}
	return out, total, nil
}

// GetThread implements store.Threads.
func (s *Store) GetThread(accountID, id string) (store.Thread, error) {
	v, ok := s.idx.threadOf(id)
	if !ok || v.acc != accountID {
		return store.Thread{}, store.ErrNotFound
	}
	s.marks.sync()
	if err := s.subjectOf(&v); err != nil {
		return store.Thread{}, err
	}
	return v.thread(s.marks.covers(v.id, v.last.seq)), nil
}

// ThreadMessages implements store.Threads: oldest first.
func (s *Store) ThreadMessages(accountID, id string, p store.Page) ([]store.Message, int, error) {
	if _, ok := s.idx.threadOf(id); !ok {
		return nil, 0, store.ErrNotFound
	}
	x := s.idx
	x.mu.RLock()
	t := x.byThread[id]
	if t == nil || t.acc != accountID {
		x.mu.RUnlock()
		return nil, 0, store.ErrNotFound
	}
	total := len(t.es)
	var page []entry
	for i := p.Offset; i < total && (p.Limit <= 0 || len(page) < p.Limit); i++ {
		page = append(page, *t.es[i])
	}
	x.mu.RUnlock()
	msgs := make([]store.Message, len(page))
	found := make([]bool, len(page))
	errs := make([]error, len(page))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, e := range page {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m, _, err := s.messageOf(e)
			switch {
			case errors.Is(err, store.ErrNotFound): // its inbox is being deleted
			case err != nil:
				errs[i] = err
			default:
				msgs[i], found[i] = m, true
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, 0, fmt.Errorf("cannot list thread messages: %w", err)
	}
	out := make([]store.Message, 0, len(page))
	for i := range msgs {
		if found[i] {
			out = append(out, msgs[i])
		}
	}
	return out, total, nil
}

// MarkThreadRead implements store.Threads: read covers the thread's
// messages this node has indexed now (a later one makes it unread again).
func (s *Store) MarkThreadRead(accountID, id string, read bool) error {
	v, ok := s.idx.threadOf(id)
	if !ok || v.acc != accountID || s.idx.isDeleted(v.inbox) {
		return store.ErrNotFound
	}
	if err := s.writable(); err != nil {
		return err
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	var rev uint64
	var err error
	if read {
		rev, err = s.marks.kv.Put(ctx, id, []byte(strconv.FormatUint(v.last.seq, 10)))
	} else {
		err = s.marks.kv.Delete(ctx, id)
	}
	if err != nil {
		return s.unavailable("mark thread "+id, err)
	}
	if read {
		s.marks.apply(id, v.last.seq, rev, true, false)
	}
	// An unread mark is seen here by the next read's sync (Delete does not
	// return its revision).
	return nil
}

var _ store.Threads = (*Store)(nil)

// readMarks is this node's copy of bucketThreads, kept by a watch.
type readMarks struct {
	s  *Store
	kv jetstream.KeyValue
	st jetstream.Stream // the bucket's stream (its last revision)

	mu      sync.Mutex
	cond    *sync.Cond
	m       map[string]markRec
	applied uint64 // the last revision the watch applied
}

type markRec struct {
	seq, rev uint64
	live     bool // false: deleted (unread), kept until the watch sees it
}

func newReadMarks(s *Store, kv jetstream.KeyValue, st jetstream.Stream) *readMarks {
	r := &readMarks{s: s, kv: kv, st: st, m: map[string]markRec{}}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// start loads the bucket and follows it until the store closes.
func (r *readMarks) start() error {
	w, err := r.kv.WatchAll(r.s.ctx)
	if err != nil {
		return fmt.Errorf("cannot watch thread read marks: %w", err)
	}
	ready := make(chan struct{})
	r.s.wg.Add(1)
	go func() {
		defer r.s.wg.Done()
		defer func() { _ = w.Stop() }()
		once := sync.Once{}
		for {
			select {
			case <-r.s.ctx.Done():
				r.mu.Lock()
				r.cond.Broadcast()
				r.mu.Unlock()
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					once.Do(func() { close(ready) })
					continue
				}
				seq, _ := strconv.ParseUint(string(e.Value()), 10, 64)
				r.apply(e.Key(), seq, e.Revision(), e.Operation() == jetstream.KeyValuePut, true)
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-r.s.ctx.Done():
		return r.s.ctx.Err()
	case <-time.After(r.s.opts.ConnectTimeout):
		return errors.New("cannot load thread read marks: timed out")
	}
}

// apply records a mark (live) or its deletion at revision rev, from the
// watch or from this node's own write.
func (r *readMarks) apply(key string, seq, rev uint64, live, fromWatch bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fromWatch && rev > r.applied {
		r.applied = rev
		r.cond.Broadcast()
	}
	if !fromWatch && rev <= r.applied {
		return // the watch has it, or something newer
	}
	if old, ok := r.m[key]; ok && old.rev > rev {
		return
	}
	switch {
	case live:
		r.m[key] = markRec{seq: seq, rev: rev, live: true}
	case fromWatch:
		delete(r.m, key)
	default:
		r.m[key] = markRec{rev: rev}
	}
}

// covers reports whether a thread's mark covers its message at stream
// sequence seq (the thread is read).
func (r *readMarks) covers(threadID string, seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.m[threadID]
	return ok && m.live && m.seq >= seq
}

// sync waits (up to catchUpWait) until the watch has applied the
// bucket's last revision as its stream leader has it: every mark written
// through any node before the call. Without an answer it goes on with
// what the node has (a read stays available; a write cannot be made then
// anyway).
func (r *readMarks) sync() {
	ctx, cancel := r.s.opCtx()
	defer cancel()
	info, err := r.st.Info(ctx)
	if err != nil {
		r.s.log.Debug("cannot read the thread marks' last revision", "error", err)
		return
	}
	if info.State.Msgs == 0 {
		return // all aged out (the last sequence is then not delivered)
	}
	target := info.State.LastSeq
	r.wait(target, catchUpWait)
}

func (r *readMarks) wait(rev uint64, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	deadline := time.Now().Add(d)
	for r.applied < rev {
		if time.Now().After(deadline) || r.s.ctx.Err() != nil {
			r.s.log.Debug("thread read marks behind", "applied", r.applied, "want", rev)
			return
		}
		tm := time.AfterFunc(time.Until(deadline), func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
		r.cond.Wait()
		tm.Stop()
	}
}

// openMarks sets up bucketThreads and its watch (setup).
func (s *Store) openMarks(ctx context.Context, kv jetstream.KeyValue) error {
	st, err := s.js.Stream(ctx, "KV_"+bucketThreads)
	if err != nil {
		return fmt.Errorf("cannot set up bucket %s: %w", bucketThreads, err)
	}
	s.marks = newReadMarks(s, kv, st)
	return s.marks.start()
}
