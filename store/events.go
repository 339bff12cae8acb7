package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mailwire/mailwire/internal/ids"
)

// Event statuses as the API shows them.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

// Delivery channels.
const (
	ChannelWebSocket = "websocket"
	ChannelWebhook   = "webhook"
	ChannelNone      = "none"
	// ChannelPull is how an event was delivered when the ack that
	// settled it came through the pull API (never an attempt's channel).
	ChannelPull = "pull"
)

// Event is an immutable stored event. Its payload is split around the
// per-attempt fields: the payload of attempt n is
//
//	Head + `,"delivered_at":"<time>","attempt":<n>` + Tail
//
// so each attempt is encoded once without re-marshalling the message.
//
// Only the ids are stored; Head and Tail are rendered from the message
// record (RenderMessageEvent) when the event is read.
type Event struct {
	ID        string
	AccountID string
	InboxID   string
	Type      string
	MessageID string
	Head      []byte // `{"event":...,"event_id":...,"occurred_at":...`
	Tail      []byte // `,"inbox_id":...,"message":{...}}`
}

// OccurredAt is the event's creation time (from its ULID).
func (e *Event) OccurredAt() time.Time {
	t, _ := ids.Time(ids.Event, e.ID)
	return t
}

// AppendPayload appends the payload of the given attempt to dst.
func (e *Event) AppendPayload(dst []byte, attempt int, deliveredAt time.Time) []byte {
	dst = append(dst, e.Head...)
	dst = append(dst, `,"delivered_at":"`...)
	dst = AppendTime(dst, deliveredAt)
	dst = append(dst, `","attempt":`...)
	dst = appendInt(dst, attempt)
	return append(dst, e.Tail...)
}

// PayloadLen is the length AppendPayload adds, give or take the digits of
// the attempt number (callers use it to size buffers).
func (e *Event) PayloadLen() int {
	return len(e.Head) + len(e.Tail) + len(`,"delivered_at":"2006-01-02T15:04:05.000Z","attempt":`) + 4
}

// TimeLayout is RFC 3339 UTC with milliseconds, as every payload time.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// AppendTime appends t in TimeLayout (UTC).
func AppendTime(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, TimeLayout)
}

func appendInt(dst []byte, n int) []byte {
	var buf [20]byte
	i := len(buf)
	if n == 0 {
		return append(dst, '0')
	}
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		buf[i] = '-'
	}
	return append(dst, buf[i:]...)
}

const eventFormat = 2

// encodeEvent is the stored form: the ids only.
func encodeEvent(e *Event) []byte {
	b := make([]byte, 0, 1+4+len(e.AccountID)+len(e.InboxID)+len(e.Type)+len(e.MessageID))
	b = append(b, eventFormat)
	for _, s := range []string{e.AccountID, e.InboxID, e.Type, e.MessageID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errBadEvent = errors.New("malformed event record")

func decodeEvent(id string, b []byte) (Event, error) {
	if len(b) < 1 || b[0] != eventFormat {
		return Event{}, errBadEvent
	}
	b = b[1:]
	var parts [4]string
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return Event{}, errBadEvent
		}
		parts[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	return Event{ID: id, AccountID: parts[0], InboxID: parts[1], Type: parts[2], MessageID: parts[3]}, nil
}

// EventState is the mutable delivery state of an event (stored in a
// compact binary form, see state.go).
type EventState struct {
	InboxID string
	Type    string
	Status  string
	// Attempts made so far, over every cycle.
	Attempts int
	// CycleStart is Attempts when the current delivery cycle began
	// (redeliver starts a new cycle: the schedule restarts).
	CycleStart int
	// NextAt is the Unix millisecond time of the next attempt (or of the
	// ack deadline when AwaitingAck); 0 when nothing is scheduled. The due
	// index holds exactly one key for it.
	NextAt int64
	// LastAt is the Unix millisecond time of the last attempt.
	LastAt       int64
	DeliveredVia string
	// AwaitingAck: the last attempt wrote to WebSockets and waits for an
	// ack until NextAt (ws ack timeout).
	AwaitingAck bool
	// AckedAt is the Unix millisecond time of the first ack, 0 if none.
	AckedAt int64
	// LastAckAt is the Unix millisecond time of the latest ack (an ack may
	// reach the writer before the outcome of the attempt it acks).
	LastAckAt int64
	// PreferWebhook: the last attempt went to WebSockets that did not ack
	// in time, so the next attempt goes to the webhook when one applies
	// (PROTOCOL.md §6, ack timeout).
	PreferWebhook bool
}

// Attempt is one delivery attempt as recorded.
type Attempt struct {
	N          int       `json:"n"`
	At         time.Time `json:"at"`
	Channel    string    `json:"channel"`
	OK         bool      `json:"ok"`
	HTTPStatus int       `json:"httpStatus,omitempty"`
	Error      string    `json:"error,omitempty"`
	DurationMs int64     `json:"durationMs"`
}

func putNewEvent(b *pebble.Batch, e *Event, st EventState) {
	_ = b.Set(key2(pEvent, e.ID), encodeEvent(e), nil)
	_ = b.Set(key(pEventState+e.AccountID, e.ID), encodeState(st), nil)
	if st.NextAt != 0 {
		_ = b.Set(dueKey(st.NextAt, e.ID), []byte(e.AccountID), nil)
	}
}

// GetEvent returns an event by id (any account: callers check AccountID),
// with its payload rendered from its message.
func (d *DB) GetEvent(id string) (Event, error) {
	v, err := d.getRaw(key2(pEvent, id))
	if err != nil {
		return Event{}, err
	}
	e, err := decodeEvent(id, v)
	if err != nil {
		return Event{}, fmt.Errorf("cannot decode event %s: %w", id, err)
	}
	var m Message
	if err := d.getRecord(e.MessageID, &m); err != nil {
		return Event{}, fmt.Errorf("cannot read message %s of event %s: %w", e.MessageID, id, err)
	}
	e.Head, e.Tail = d.RenderEvent(id, &m)
	return e, nil
}

// RenderEvent renders the payload of message m's event within the
// configured size cap (RenderMessageEvent).
func (d *DB) RenderEvent(evtID string, m *Message) (head, tail []byte) {
	return RenderMessageEventAt(evtID, m, d.maxEventBytes, d.publicURL)
}

// GetEventState returns the delivery state of an account's event.
func (d *DB) GetEventState(accountID, id string) (EventState, error) {
	v, err := d.getRaw(key(pEventState+accountID, id))
	if err != nil {
		return EventState{}, err
	}
	return decodeState(v)
}

// EventFilter selects events in ListEvents.
type EventFilter struct {
	InboxID string // "" = any
	Status  string // "" = any
}

// EventSummary is an event id with its state, as listed.
type EventSummary struct {
	ID    string
	State EventState
}

// ListEvents returns a page of the account's events, newest first, that
// match f, and the number that match.
func (d *DB) ListEvents(accountID string, f EventFilter, p Page) ([]EventSummary, int, error) {
	var out []EventSummary
	total := 0
	pfx := prefixKey(pEventState + accountID)
	var decErr error
	err := d.scan(pfx, true, func(k, v []byte) bool {
		st, err := decodeState(v)
		if err != nil {
			decErr = err
			return false
		}
		if (f.InboxID != "" && st.InboxID != f.InboxID) || (f.Status != "" && st.Status != f.Status) {
			return true
		}
		if total >= p.Offset && len(out) < p.Limit {
			out = append(out, EventSummary{ID: string(k[len(pfx):]), State: st})
		}
		total++
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list events: %w", err)
	}
	return out, total, nil
}

// ListAttempts returns an event's attempts in order.
func (d *DB) ListAttempts(evtID string) ([]Attempt, error) {
	var out []Attempt
	var decErr error
	err := d.scan(prefixKey(pAttempt+evtID), false, func(_, v []byte) bool {
		var a Attempt
		if err := jsonUnmarshal(v, &a); err != nil {
			decErr = err
			return false
		}
		out = append(out, a)
		return true
	})
	if err == nil {
		err = decErr
	}
	return out, err
}

// StoredEvent is an event with its delivery state.
type StoredEvent struct {
	Event
	State EventState
}

// EventsAfter returns up to limit events of the account with ids after
// afterID and before beforeID (both exclusive; "" = no bound), oldest
// first, for which match(inbox, type) holds (nil matches all). It examines
// at most scanLimit state records (0 = no limit) so that a subscription
// matching little cannot scan the whole log; when it stopped for that
// reason with fewer than limit matches, more is the id of the last record
// examined (resuming after it misses nothing).
func (d *DB) EventsAfter(accountID, afterID, beforeID string, limit, scanLimit int, match func(inbox, typ string) bool) (evs []StoredEvent, more string, err error) {
	pfx := prefixKey(pEventState + accountID)
	lower := append(append([]byte(nil), pfx...), afterID...)
	lower = append(lower, 0) // strictly after
	upper := prefixEnd(pfx)
	if beforeID != "" {
		upper = append(append([]byte(nil), pfx...), beforeID...)
	}
	var found []StoredEvent
	scanned := 0
	var decErr error
	var last string
	err = d.scanRange(lower, upper, false, func(k, v []byte) bool {
		scanned++
		st, err := decodeState(v)
		if err != nil {
			decErr = err
			return false
		}
		id := string(k[len(pfx):])
		last = id
		if match == nil || match(st.InboxID, st.Type) {
			found = append(found, StoredEvent{Event: Event{ID: id}, State: st})
		}
		return len(found) < limit && (scanLimit == 0 || scanned < scanLimit)
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, "", fmt.Errorf("cannot scan events: %w", err)
	}
	if scanLimit > 0 && scanned >= scanLimit && len(found) < limit {
		more = last
	}
	out := found[:0]
	for _, se := range found {
		e, err := d.GetEvent(se.ID)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		se.Event = e
		out = append(out, se)
	}
	return out, more, nil
}

// Due is one entry of the due index.
type Due struct {
	Key       []byte // the index key (a copy)
	At        int64  // Unix ms
	EventID   string
	AccountID string
}

// ScanDue calls fn for due-index entries from key from (inclusive; nil =
// the start) whose time is <= untilMs, in time order; fn returns false to
// stop.
func (d *DB) ScanDue(from []byte, untilMs int64, fn func(Due) bool) error {
	lower := from
	if lower == nil {
		lower = []byte(pDue)
	}
	upper := dueKey(untilMs+1, "")
	return d.scanRange(lower, upper, false, func(k, v []byte) bool {
		at, id, ok := parseDueKey(k)
		if !ok {
			return true
		}
		return fn(Due{Key: append([]byte(nil), k...), At: at, EventID: id, AccountID: string(v)})
	})
}

// NextDue returns the time of the first due entry after afterMs
// (exclusive), and false when there is none.
func (d *DB) NextDue(afterMs int64) (int64, bool, error) {
	var at int64
	found := false
	err := d.scanRange(dueKey(afterMs+1, ""), prefixEnd([]byte(pDue)), false, func(k, _ []byte) bool {
		at, _, found = parseDueKey(k)
		return false
	})
	return at, found, err
}

// DueKey exposes the due-index key for (atMs, evtID) to the scheduler.
func DueKey(atMs int64, evtID string) []byte { return dueKey(atMs, evtID) }

// StateBatch collects delivery-state changes and attempt records for one
// synced commit. It is not safe for concurrent use.
type StateBatch struct {
	d *DB
	b *pebble.Batch
	n int
}

// newStateBatch starts a batch of state changes. Until it is committed or
// closed, events cannot be deleted (inbox deletion, retention): the
// states the batch reads stay valid until it writes them back.
func (d *DB) newStateBatch() *StateBatch {
	d.stateMu.RLock()
	return &StateBatch{d: d, b: d.pdb.NewBatch()}
}

// DeleteState removes an event's state and its due entry (an event whose
// record is gone).
func (sb *StateBatch) DeleteState(accountID, evtID string, old EventState) {
	if old.NextAt != 0 {
		_ = sb.b.Delete(dueKey(old.NextAt, evtID), nil)
	}
	_ = sb.b.Delete(key(pEventState+accountID, evtID), nil)
	sb.n++
}

// PutState replaces an event's state (old is its current stored state),
// keeping the due index consistent: exactly one key at nw.NextAt, none
// when it is 0.
func (sb *StateBatch) PutState(accountID, evtID string, old, nw EventState) {
	if old.NextAt != 0 && old.NextAt != nw.NextAt {
		_ = sb.b.Delete(dueKey(old.NextAt, evtID), nil)
	}
	if nw.NextAt != 0 && nw.NextAt != old.NextAt {
		_ = sb.b.Set(dueKey(nw.NextAt, evtID), []byte(accountID), nil)
	}
	_ = sb.b.Set(key(pEventState+accountID, evtID), encodeState(nw), nil)
	sb.n++
}

// PutAttempt records attempt a of an event.
func (sb *StateBatch) PutAttempt(evtID string, a Attempt) {
	setJSON(sb.b, attemptKey(evtID, a.N), a)
	sb.n++
}

// Len is the number of changes in the batch.
func (sb *StateBatch) Len() int { return sb.n }

// Commit applies the batch (synced when sync is true) and releases it.
func (sb *StateBatch) Commit(sync bool) error {
	defer sb.d.stateMu.RUnlock()
	defer sb.b.Close()
	if sb.n == 0 {
		return nil
	}
	if err := sb.d.writable(); err != nil {
		return err
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	if err := sb.b.Commit(opts); err != nil {
		return fmt.Errorf("cannot commit delivery state: %w", err)
	}
	return nil
}

// Close releases an uncommitted batch.
func (sb *StateBatch) Close() {
	_ = sb.b.Close()
	sb.d.stateMu.RUnlock()
}

// SweepEvents deletes delivered events created before deliveredBefore and
// failed events created before failedBefore, with their attempts, at most
// max per call. Pending events are never swept. It returns how many it
// deleted.
func (d *DB) SweepEvents(deliveredBefore, failedBefore time.Time, max int) (int, error) {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	b := d.pdb.NewBatch()
	n := 0
	var decErr error
	err := d.scan([]byte(pEventState), false, func(k, v []byte) bool {
		rest := k[len(pEventState):]
		slash := -1
		for i, c := range rest {
			if c == '/' {
				slash = i
				break
			}
		}
		if slash < 0 {
			return true
		}
		evtID := string(rest[slash+1:])
		created, ok := ids.Time(ids.Event, evtID)
		if !ok {
			return true
		}
		st, err := decodeState(v)
		if err != nil {
			decErr = err
			return false
		}
		if (st.Status == StatusDelivered && created.Before(deliveredBefore)) ||
			(st.Status == StatusFailed && created.Before(failedBefore)) {
			_ = b.Delete(k, nil)
			_ = b.Delete(key2(pEvent, evtID), nil)
			ap := prefixKey(pAttempt + evtID)
			_ = b.DeleteRange(ap, prefixEnd(ap), nil)
			if st.NextAt != 0 {
				_ = b.Delete(dueKey(st.NextAt, evtID), nil)
			}
			n++
		}
		return n < max
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		b.Close()
		return 0, fmt.Errorf("cannot sweep events: %w", err)
	}
	if n == 0 {
		b.Close()
		return 0, nil
	}
	if err := d.commit(b); err != nil {
		return 0, err
	}
	return n, nil
}

// DeleteDue removes one due-index entry (a stale one whose event is gone).
func (sb *StateBatch) DeleteDue(atMs int64, evtID string) {
	_ = sb.b.Delete(dueKey(atMs, evtID), nil)
	sb.n++
}
