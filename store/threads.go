package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mailwire/mailwire/internal/ids"
)

// Threads (OpenMail's: an inbox's messages grouped by In-Reply-To and
// References, see ThreadOf).
//
// Ingest writes no thread aggregate: two messages of one thread may be
// stored concurrently (ingest holds its inbox stripe shared), and a
// stored count or "last message" would need a read-modify-write under a
// per-thread lock held across the fsync. Instead every message writes
// keys nobody else writes, in its own ingest batch:
//
//   - mi/<inbox>/<msg> holds the message's thread id (the inbox's
//     message index, which existed before, now carries it);
//   - tm/<thread>/<msg> lists the thread's messages in time order;
//   - t/<thread> (the thread's first message only) holds what does not
//     change: inbox, account, subject, creation time.
//
// The figures are derived when read: messageCount counts tm keys,
// lastMessageAt is the last one's time (message ids are ULIDs made at
// receipt). Read state is a mark, tr/<inbox>/<thread>, holding the
// message count the thread had when it was marked read: the thread is
// read while it has no more messages than that, so a new message makes a
// read thread unread without any write at ingest.

// Thread is a thread as the API shows it.
type Thread struct {
	ID, InboxID, AccountID string
	// Subject is the subject of the thread's first message.
	Subject       string
	IsRead        bool
	MessageCount  int
	LastMessageAt time.Time
	CreatedAt     time.Time
}

// ThreadFilter selects threads in ListThreads.
type ThreadFilter struct {
	IsRead *bool // nil: any
}

// threadRecord is t/<thread>: what the first message fixed.
type threadRecord struct {
	InboxID   string    `json:"inboxId"`
	AccountID string    `json:"accountId"`
	Subject   string    `json:"subject"`
	CreatedAt time.Time `json:"createdAt"`
}

// putThreadKeys adds a new message's thread keys to an ingest batch.
func putThreadKeys(b *pebble.Batch, m *Message, newThread bool) {
	_ = b.Set(key(pInboxMessage+m.InboxID, m.ID), []byte(m.ThreadID), nil)
	_ = b.Set(key(pThreadMessage+m.ThreadID, m.ID), nil, nil)
	if newThread {
		setJSON(b, key2(pThreadInfo, m.ThreadID), threadRecordOf(m))
	}
}

func threadRecordOf(m *Message) threadRecord {
	return threadRecord{InboxID: m.InboxID, AccountID: m.AccountID, Subject: m.Subject, CreatedAt: m.ReceivedAt}
}

// threadKeysBytes is what putThreadKeys may add to a batch.
func threadKeysBytes(m *Message, newThread bool) int {
	n := batchRecordBytes(len(pInboxMessage)+len(m.InboxID)+1+len(m.ID), len(m.ThreadID)) +
		batchRecordBytes(len(pThreadMessage)+len(m.ThreadID)+1+len(m.ID), 0)
	if newThread {
		n += batchRecordBytes(len(pThreadInfo)+len(m.ThreadID), 128+len(m.InboxID)+len(m.AccountID)+2*len(m.Subject))
	}
	return n
}

// threadStats are a thread's derived figures.
type threadStats struct {
	count   int
	lastID  string // its latest message
	firstID string // its first (ListThreads only)
}

// ListThreads returns a page of the inbox's threads, the most recent
// activity first, and the number that match f. The inbox must belong to
// the caller's account (checked by the caller, as for ListMessages). It
// reads the inbox's message index once: O(messages of the inbox), as
// ListMessages.
func (d *DB) ListThreads(inboxID string, f ThreadFilter, p Page) ([]Thread, int, error) {
	var order []string // threads, latest activity first
	stats := map[string]*threadStats{}
	var legacy []string // index entries without a thread id
	pfx := prefixKey(pInboxMessage + inboxID)
	err := d.scan(pfx, true, func(k, v []byte) bool {
		msgID := string(k[len(pfx):])
		if len(v) == 0 {
			legacy = append(legacy, msgID)
			return true
		}
		countThread(stats, &order, string(v), msgID)
		return true
	})
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list threads: %w", err)
	}
	if len(legacy) > 0 {
		// Written before threads were indexed and not backfilled (a
		// read-only store): the message records say.
		order, stats, err = d.legacyThreadOrder(inboxID)
		if err != nil {
			return nil, 0, err
		}
	}
	marks, err := d.readMarks(inboxID)
	if err != nil {
		return nil, 0, err
	}
	var out []Thread
	total := 0
	for _, id := range order {
		st := stats[id]
		read := marks[id] >= st.count
		if f.IsRead != nil && *f.IsRead != read {
			continue
		}
		if total >= p.Offset && len(out) < p.Limit {
			t, err := d.threadView(id, inboxID, st, read)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, t)
		}
		total++
	}
	return out, total, nil
}

func countThread(stats map[string]*threadStats, order *[]string, thread, msgID string) {
	st := stats[thread]
	if st == nil {
		st = &threadStats{lastID: msgID}
		stats[thread] = st
		*order = append(*order, thread)
	}
	st.count++
	st.firstID = msgID // the scan runs newest first
}

// legacyThreadOrder is ListThreads' scan from the message records.
func (d *DB) legacyThreadOrder(inboxID string) ([]string, map[string]*threadStats, error) {
	var order []string
	stats := map[string]*threadStats{}
	pfx := prefixKey(pInboxMessage + inboxID)
	var readErr error
	err := d.scan(pfx, true, func(k, v []byte) bool {
		msgID := string(k[len(pfx):])
		thread := string(v)
		if thread == "" {
			var m messageHead
			if readErr = d.getRecord(msgID, &m); readErr != nil {
				return false
			}
			thread = m.ThreadID
		}
		countThread(stats, &order, thread, msgID)
		return true
	})
	if err == nil {
		err = readErr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list threads: %w", err)
	}
	return order, stats, nil
}

// readMarks returns the inbox's read marks (thread -> message count).
func (d *DB) readMarks(inboxID string) (map[string]int, error) {
	marks := map[string]int{}
	pfx := prefixKey(pThreadRead + inboxID)
	err := d.scan(pfx, false, func(k, v []byte) bool {
		n, _ := binary.Uvarint(v)
		marks[string(k[len(pfx):])] = int(n)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read thread marks: %w", err)
	}
	return marks, nil
}

// threadView assembles a thread from its record and figures.
func (d *DB) threadView(id, inboxID string, st *threadStats, read bool) (Thread, error) {
	rec, err := d.threadRecord(id, st.firstID)
	if err != nil {
		return Thread{}, err
	}
	last, _ := ids.Time(ids.Message, st.lastID)
	return Thread{ID: id, InboxID: inboxID, AccountID: rec.AccountID, Subject: rec.Subject, IsRead: read,
		MessageCount: st.count, LastMessageAt: last, CreatedAt: rec.CreatedAt}, nil
}

// threadRecord reads t/<thread>, or (a thread stored without one: by a
// caller that did not set Inbound.NewThread, or before threads were
// indexed and not backfilled) makes it from the thread's first message:
// first when the caller knows it, else the first of its tm keys.
func (d *DB) threadRecord(id, first string) (threadRecord, error) {
	var rec threadRecord
	err := d.getJSON(key2(pThreadInfo, id), &rec)
	if !errors.Is(err, ErrNotFound) {
		return rec, err
	}
	pfx := prefixKey(pThreadMessage + id)
	if err := d.scan(pfx, false, func(k, _ []byte) bool { first = string(k[len(pfx):]); return false }); err != nil {
		return rec, err
	}
	if first == "" {
		return rec, ErrNotFound
	}
	var m messageHead
	if err := d.getRecord(first, &m); err != nil {
		return rec, err
	}
	return threadRecord{InboxID: m.InboxID, AccountID: m.AccountID, Subject: m.Subject, CreatedAt: m.ReceivedAt}, nil
}

// messageHead is the part of a message record threads need (decoding it
// skips the bodies without keeping them).
type messageHead struct {
	ID         string    `json:"id"`
	InboxID    string    `json:"inboxId"`
	AccountID  string    `json:"accountId"`
	ThreadID   string    `json:"threadId"`
	Subject    string    `json:"subject"`
	ReceivedAt time.Time `json:"receivedAt"`
}

// GetThread returns a thread of the account; ErrNotFound when it does not
// exist or is another account's.
func (d *DB) GetThread(accountID, id string) (Thread, error) {
	rec, err := d.threadRecord(id, "")
	if err != nil {
		return Thread{}, err
	}
	if rec.AccountID != accountID {
		return Thread{}, ErrNotFound
	}
	st, err := d.threadStats(id)
	if err != nil {
		return Thread{}, err
	}
	if st.count == 0 {
		return Thread{}, ErrNotFound // its inbox is being deleted
	}
	mark, err := d.readMark(rec.InboxID, id)
	if err != nil {
		return Thread{}, err
	}
	return d.threadView(id, rec.InboxID, &st, mark >= st.count)
}

func (d *DB) threadStats(id string) (threadStats, error) {
	var st threadStats
	pfx := prefixKey(pThreadMessage + id)
	err := d.scan(pfx, false, func(k, _ []byte) bool {
		st.count++
		st.lastID = string(k[len(pfx):])
		return true
	})
	if err != nil {
		return st, fmt.Errorf("cannot read thread %s: %w", id, err)
	}
	return st, nil
}

func (d *DB) readMark(inboxID, threadID string) (int, error) {
	v, err := d.getRaw(key(pThreadRead+inboxID, threadID))
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, _ := binary.Uvarint(v)
	return int(n), nil
}

// ThreadMessages returns a page of a thread of the account's messages,
// oldest first, and their number; ErrNotFound for an unknown thread or
// another account's.
func (d *DB) ThreadMessages(accountID, id string, p Page) ([]Message, int, error) {
	rec, err := d.threadRecord(id, "")
	if err != nil {
		return nil, 0, err
	}
	if rec.AccountID != accountID {
		return nil, 0, ErrNotFound
	}
	var page []string
	total := 0
	pfx := prefixKey(pThreadMessage + id)
	err = d.scan(pfx, false, func(k, _ []byte) bool {
		if total >= p.Offset && len(page) < p.Limit {
			page = append(page, string(k[len(pfx):]))
		}
		total++
		return true
	})
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list thread messages: %w", err)
	}
	out := make([]Message, 0, len(page))
	for _, msgID := range page {
		var m Message
		err := d.getRecord(msgID, &m)
		if errors.Is(err, ErrNotFound) {
			continue // its inbox is being deleted
		}
		if err != nil {
			return nil, 0, fmt.Errorf("cannot list thread messages: %s: %w", msgID, err)
		}
		out = append(out, m)
	}
	return out, total, nil
}

// MarkThreadRead marks a thread of the account read (through the messages
// it has now: a later one makes it unread again) or unread.
func (d *DB) MarkThreadRead(accountID, id string, read bool) error {
	rec, err := d.threadRecord(id, "")
	if err != nil {
		return err
	}
	if rec.AccountID != accountID {
		return ErrNotFound
	}
	// Shared, as ingest: an inbox deletion (exclusive) cannot run between
	// the check and the write and leave a mark behind.
	l := d.inboxLock(rec.InboxID)
	l.RLock()
	defer l.RUnlock()
	if _, gone := d.deleted.Load(rec.InboxID); gone {
		return ErrNotFound
	}
	st, err := d.threadStats(id)
	if err != nil {
		return err
	}
	if st.count == 0 {
		return ErrNotFound
	}
	b := d.pdb.NewBatch()
	k := key(pThreadRead+rec.InboxID, id)
	if read {
		_ = b.Set(k, binary.AppendUvarint(nil, uint64(st.count)), nil)
	} else {
		_ = b.Delete(k, nil)
	}
	if err := d.commit(b); err != nil {
		return fmt.Errorf("cannot mark thread %s: %w", id, err)
	}
	return nil
}

// deleteInboxThreads adds to an inbox deletion's batch the thread keys of
// one of its messages (thread from the index entry, or from the message
// record for entries written before threads were indexed).
func (d *DB) deleteInboxThreads(b *pebble.Batch, msgID string, indexValue []byte, threads map[string]bool) error {
	thread := string(indexValue)
	if thread == "" {
		var m messageHead
		if err := d.getRecord(msgID, &m); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
		thread = m.ThreadID
	}
	if thread == "" {
		return nil
	}
	_ = b.Delete(key(pThreadMessage+thread, msgID), nil)
	if !threads[thread] {
		threads[thread] = true
		_ = b.Delete(key2(pThreadInfo, thread), nil)
	}
	return nil
}

// threadsIndexed is the metadata key set once every message has its thread
// keys (backfillThreads).
var threadsIndexed = key2(pMeta, "threads-indexed")

// backfillThreads gives the messages stored before threads were indexed
// their thread keys (mi value, tm, t): once per database, at open, before
// anything else runs. It is idempotent, so a crash part-way only repeats
// work.
func (d *DB) backfillThreads() error {
	if done, err := d.has(threadsIndexed); err != nil || done {
		return err
	}
	seen := map[string]bool{}
	b := d.pdb.NewBatch()
	n, total := 0, 0
	var decErr error
	flush := func() error {
		if n == 0 {
			return nil
		}
		err := d.commit(b)
		b, n = d.pdb.NewBatch(), 0
		return err
	}
	var flushErr error
	err := d.scan([]byte(pMessage), false, func(k, v []byte) bool {
		var m messageHead
		if i := bytes.IndexByte(k, 0); i >= 0 {
			// A chunk of a record with large bodies (putRecordTable):
			// the record is read whole at its first chunk.
			if len(k) != i+5 || binary.BigEndian.Uint32(k[i+1:]) != 0 {
				return true
			}
			decErr = d.getRecord(string(k[len(pMessage):i]), &m)
		} else {
			decErr = json.Unmarshal(v, &m)
		}
		if decErr != nil {
			return false
		}
		if m.ThreadID == "" {
			return true
		}
		full := Message{ID: m.ID, InboxID: m.InboxID, AccountID: m.AccountID, ThreadID: m.ThreadID, Subject: m.Subject, ReceivedAt: m.ReceivedAt}
		// Messages scan in id (time) order: a thread's first is its oldest.
		putThreadKeys(b, &full, !seen[m.ThreadID])
		seen[m.ThreadID] = true
		n++
		total++
		if n >= 1000 {
			if flushErr = flush(); flushErr != nil {
				return false
			}
		}
		return true
	})
	for _, e := range []error{decErr, flushErr} {
		if err == nil {
			err = e
		}
	}
	if err == nil {
		_ = b.Set(threadsIndexed, []byte("1"), nil)
		n++
		err = flush()
	} else {
		_ = b.Close()
	}
	if err != nil {
		return fmt.Errorf("cannot index threads: %w", err)
	}
	if total > 0 {
		d.log.Info("indexed the threads of existing messages", "messages", total, "threads", len(seen))
	}
	return nil
}

var _ Threads = (*DB)(nil)
