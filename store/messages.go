package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Message is a stored inbound message (the parsed view; the original bytes
// are kept separately and served by GetRaw).
type Message struct {
	ID           string           `json:"id"`
	InboxID      string           `json:"inboxId"`
	AccountID    string           `json:"accountId"`
	ThreadID     string           `json:"threadId"`
	RFCMessageID string           `json:"rfcMessageId"`
	From         string           `json:"from"`
	To           string           `json:"to"`
	Cc           []string         `json:"cc"`
	Subject      string           `json:"subject"`
	BodyText     string           `json:"bodyText"`
	BodyHTML     string           `json:"bodyHtml,omitempty"`
	Attachments  []AttachmentMeta `json:"attachments"`
	ReceivedAt   time.Time        `json:"receivedAt"`
	RawSize      int              `json:"rawSize"`
	// AttachmentsTruncated: the message had more MIME parts than
	// --max-mime-parts; the raw message keeps them all.
	AttachmentsTruncated bool `json:"attachmentsTruncated,omitempty"`
}

// AttachmentMeta describes an attachment; its bytes are under the message.
type AttachmentMeta struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	SizeBytes   int    `json:"sizeBytes"`
}

// Inbound is everything one inbound message writes for one inbox: the
// message, its raw bytes and attachments, its thread index entries, its
// event with initial delivery state, and optionally the idempotent reply.
type Inbound struct {
	Message     Message
	Raw         []byte
	Attachments [][]byte // aligned with Message.Attachments
	// Buffer, when set, holds Raw at its end (Raw is
	// Buffer[len(Buffer)-len(Raw):]), and the room before it is free: a
	// store implementing SourceStore may build its write there, over Raw
	// (DB does for a single item when it fits: the raw bytes are moved
	// into their records instead of copied into a batch beside them).
	// Raw must not be used once StoreInbound or Append was called.
	Buffer []byte
	// Sources, when set, is aligned with Message.Attachments too: a
	// non-nil entry gives that attachment's bytes instead of Attachments
	// (which may then be nil there). Stores that implement SourceStore
	// read them straight into their write (DB: into the Pebble batch, so
	// that a decoded copy never exists beside it); see Attachment.
	Sources []AttachmentSource
	// ThreadRefs are RFC message ids to map to Message.ThreadID in this
	// inbox (the message's own id, so later replies find the thread).
	ThreadRefs []string
	// NewThread: Message.ThreadID is new, this is its first message (the
	// thread's record is written with it).
	NewThread bool
	Event     Event
	State     EventState
	// IdempotencyKey, when set, stores Reply under it for this inbox.
	IdempotencyKey string
	Reply          []byte
}

// AttachmentSource is an attachment's bytes produced on demand
// (mailparse.Attachment implements it, decoding from the raw message).
type AttachmentSource interface {
	// Len is the number of bytes Reader produces.
	Len() int
	// Reader returns the bytes from the start, each call afresh.
	Reader() io.Reader
}

// SourceStore is implemented by stores that read Inbound.Sources and may
// build their write in Inbound.Buffer; to other stores a caller passes
// every attachment in Attachments, and no Buffer.
type SourceStore interface {
	ReadsAttachmentSources() bool
}

// ReadsAttachmentSources implements SourceStore.
func (d *DB) ReadsAttachmentSources() bool { return true }

// attachmentLen is the length of attachment j of it.
func (it *Inbound) attachmentLen(j int) int {
	if j < len(it.Sources) && it.Sources[j] != nil {
		return it.Sources[j].Len()
	}
	return len(it.Attachments[j])
}

// IdempotencyHash turns a client's Idempotency-Key into the stored form.
func IdempotencyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// StoreInbound writes every item in one synced batch: it returns only once
// all of it is durable. The caller has read each item's inbox; items whose
// inbox was deleted since make the whole call fail with ErrNotFound and
// nothing is written.
//
// Memory: the batch is allocated once at its final size (Pebble's batch
// grows by doubling otherwise, holding the old and the new buffer while it
// copies: 96 MiB for a 35 MiB batch), a message record with large bodies
// is encoded straight into it (messageRecord), and attachments given as
// Sources are decoded straight into it (putValueFrom). What remains is the
// batch: one copy of the raw bytes, attachments and bodies, which Pebble
// needs contiguous. Given a Buffer with room for it (InboundBufferCap),
// the batch of a single large message is built there, its raw records
// moved over the raw bytes, so that no second copy exists at all. From
// ingestFromBytes on, the raw bytes, attachments and (with large bodies)
// the record are written as tables instead (tables.go).
func (d *DB) StoreInbound(items []Inbound) error {
	if err := d.writable(); err != nil {
		return err
	}
	// Take the inbox stripes in a fixed order (no deadlock with another
	// multi-inbox call), shared: deletion takes them exclusively.
	stripes := make([]int, 0, len(items))
	for _, it := range items {
		stripes = append(stripes, d.stripe(it.Message.InboxID))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, s := range stripes {
		d.inboxLocks[s].RLock()
	}
	defer func() {
		for _, s := range stripes {
			d.inboxLocks[s].RUnlock()
		}
	}()
	for i := range items {
		if _, gone := d.deleted.Load(items[i].Message.InboxID); gone {
			return fmt.Errorf("cannot store message: inbox %s: %w", items[i].Message.InboxID, ErrNotFound)
		}
	}
	// Large messages' raw bytes and attachments go in as tables of their
	// own first (tables.go); the batch below commits the rest.
	large, msgIDs := ingests(items) // msgIDs: to drop, should the commit fail
	if large != nil {
		// Close waits for an ingestion under way: Pebble must stay open
		// until its cleanup, should the commit fail.
		d.tables.RLock()
		defer d.tables.RUnlock()
		if d.tables.closed {
			return errStoreClosed
		}
		if err := d.ingestLarge(items, large, msgIDs); err != nil {
			return err
		}
	}

	// direct lets large message records be encoded in place; the loop runs
	// a second time, without, only if that failed (which would be a bug).
	for direct := true; ; direct = false {
		recs := make([]messageRecord, len(items))
		size := batchHeaderBytes
		for i := range items {
			it := &items[i]
			m := &it.Message
			if large == nil || !large[i] || !recordInTable(it) {
				recs[i] = newMessageRecord(m, direct)
				size += batchRecordBytes(len(pMessage)+len(m.ID), recs[i].size())
			}
			if large != nil && large[i] {
				size += batchRecordBytes(len(pIngesting)+len(m.ID), 0)
			} else {
				size += valueRecordBytes(len(pRaw)+len(m.ID), len(it.Raw))
				for j, a := range m.Attachments {
					size += valueRecordBytes(len(pAttachment)+len(m.ID)+1+len(a.Filename), it.attachmentLen(j))
				}
			}
			size += threadKeysBytes(m, it.NewThread)
			for _, ref := range it.ThreadRefs {
				size += batchRecordBytes(len(pThread)+len(m.InboxID)+1+len(ref), len(m.ThreadID))
			}
			size += newEventBytes(&it.Event, it.State)
			size += batchRecordBytes(len(pIdempotency)+len(m.InboxID)+1+len(it.IdempotencyKey), len(it.Reply))
		}
		var b *pebble.Batch
		var buf []byte // the batch is built in items[0].Buffer (see Inbound.Buffer)
		// Only for a large message, committed alone: Pebble keeps the
		// buffer of a closed batch up to 1 MiB for its next batches.
		if it := &items[0]; len(items) == 1 && large == nil && len(it.Raw) >= inPlaceFromBytes && len(it.Buffer) >= size &&
			&it.Buffer[len(it.Buffer)-len(it.Raw)] == &it.Raw[0] {
			buf = it.Buffer
			b = d.pdb.NewBatch()
			clear(buf[:batchHeaderBytes])
			// Capacity up to Raw: should a record outgrow the computed
			// size, Pebble moves the batch elsewhere rather than write over
			// Raw.
			if err := b.SetRepr(buf[: batchHeaderBytes : len(buf)-len(it.Raw)]); err != nil {
				return fmt.Errorf("BUG: cannot start a batch in place: %w", err)
			}
		} else {
			b = d.pdb.NewBatchWithSize(size)
		}
		ok := true
		for i := 0; i < len(items) && ok; i++ {
			it := &items[i]
			m := &it.Message
			// The small records first: Pebble sizes the buffer of an empty
			// batch for its first record, which must not be the largest.
			putThreadKeys(b, m, it.NewThread)
			for _, ref := range it.ThreadRefs {
				if ref != "" {
					_ = b.Set(key(pThread+m.InboxID, ref), []byte(m.ThreadID), nil)
				}
			}
			putNewEvent(b, &it.Event, it.State)
			if it.IdempotencyKey != "" {
				_ = b.Set(key(pIdempotency+m.InboxID, it.IdempotencyKey), it.Reply, nil)
			}
			if large != nil && large[i] {
				// Its raw bytes and attachments are in (ingestLarge), and
				// its record too when its bodies are large.
				if !recordInTable(it) {
					ok = recs[i].set(b, key2(pMessage, m.ID))
				}
				continue
			}
			if ok = recs[i].set(b, key2(pMessage, m.ID)); !ok {
				break
			}
			// Attachments before the raw bytes: Sources may read from Raw,
			// which the raw records overwrite when the batch is in place.
			for j, a := range m.Attachments {
				k := key(pAttachment+m.ID, a.Filename)
				if j < len(it.Sources) && it.Sources[j] != nil {
					if err := putValueFrom(b, k, it.Sources[j]); err != nil {
						_ = b.Close()
						return fmt.Errorf("cannot store message: attachment %q: %w", a.Filename, err)
					}
					continue
				}
				putValue(b, k, it.Attachments[j])
			}
			rawKey := key2(pRaw, m.ID)
			if buf != nil {
				extendInPlace(b, buf, len(it.Raw), valueRecordBytes(len(rawKey), len(it.Raw)))
			}
			putValue(b, rawKey, it.Raw)
		}
		if ok {
			markDone(b, items, large)
			if testHookBeforeCommit != nil {
				testHookBeforeCommit()
			}
			err := d.group.commit(b)
			if err != nil && msgIDs != nil {
				if derr := d.dropIngested(msgIDs); derr != nil {
					d.log.Error("cannot remove the tables of a message not stored; the next start removes them", "error", derr)
				}
			}
			return err
		}
		_ = b.Close()
		d.log.Error("BUG: message record longer or shorter than computed; encoding it apart")
	}
}

// inPlaceFromBytes is the raw size from which StoreInbound builds the
// batch in Inbound.Buffer (above groupAloneBytes and Pebble's 1 MiB
// retained batch buffer).
const inPlaceFromBytes = 1 << 20

// InboundBufferCap is the capacity to give a raw message of n bytes
// (Inbound.Buffer) so that its batch fits there: the raw bytes, as much
// again for attachments or the body text's JSON, and room for the other
// records (an event of up to 512 KiB).
func InboundBufferCap(n int) int {
	if n < inPlaceFromBytes || n >= ingestFromBytes {
		// Small, or written as tables (tables.go) from the raw bytes
		// where they are: no batch holds them.
		return n
	}
	return 2*n + n/32 + 512<<10
}

// extendInPlace lets the raw records of a batch built in buf (whose tail
// holds the raw bytes, rawLen of them) take the room up to buf's end, when
// they fit: rawRecords (valueRecordBytes) after what is written, so that
// each record's header and value land before the raw bytes not yet
// copied (copy moves overlapping bytes correctly). When they do not fit,
// or Pebble has moved the batch out of buf already, the batch keeps its
// capacity, and Pebble moves it out of buf before it would overwrite
// them.
func extendInPlace(b *pebble.Batch, buf []byte, rawLen, rawRecords int) {
	repr := b.Repr() // sets the header's count, which SetRepr reads back
	if len(repr) == 0 || &repr[0] != &buf[0] || len(repr)+rawRecords > len(buf) {
		return
	}
	if err := b.SetRepr(buf[:len(repr):len(buf)]); err != nil {
		panic(fmt.Sprintf("BUG: cannot extend a batch in place: %v", err))
	}
}

// testHookBeforeCommit, set by tests, runs when StoreInbound's batch is
// complete, before its commit.
var testHookBeforeCommit func()

func (d *DB) stripe(inboxID string) int {
	// Same hash as inboxLock.
	var h uint32 = 2166136261
	for i := 0; i < len(inboxID); i++ {
		h ^= uint32(inboxID[i])
		h *= 16777619
	}
	return int(h % uint32(len(d.inboxLocks)))
}

// Idempotent returns the stored reply for an idempotency key hash of the
// inbox, or ErrNotFound.
func (d *DB) Idempotent(inboxID, keyHash string) ([]byte, error) {
	return d.getRaw(key(pIdempotency+inboxID, keyHash))
}

// ThreadOf returns the thread id of the first of refs known in the inbox,
// or "" when none is.
func (d *DB) ThreadOf(inboxID string, refs []string) (string, error) {
	for _, r := range refs {
		if r == "" {
			continue
		}
		v, err := d.getRaw(key(pThread+inboxID, r))
		if err == ErrNotFound {
			continue
		}
		if err != nil {
			return "", err
		}
		return string(v), nil
	}
	return "", nil
}

// GetMessage returns a message of the account, or ErrNotFound.
func (d *DB) GetMessage(accountID, id string) (Message, error) {
	var m Message
	if err := d.getRecord(id, &m); err != nil {
		return Message{}, err
	}
	if m.AccountID != accountID {
		return Message{}, ErrNotFound
	}
	return m, nil
}

// GetRaw returns the original bytes of a message of the account.
func (d *DB) GetRaw(accountID, id string) ([]byte, error) {
	if _, err := d.GetMessage(accountID, id); err != nil {
		return nil, err
	}
	return d.getValue(key2(pRaw, id))
}

// GetAttachment returns an attachment's metadata and bytes.
func (d *DB) GetAttachment(accountID, msgID, filename string) (AttachmentMeta, []byte, error) {
	m, err := d.GetMessage(accountID, msgID)
	if err != nil {
		return AttachmentMeta{}, nil, err
	}
	for _, a := range m.Attachments {
		if a.Filename == filename {
			data, err := d.getValue(key(pAttachment+msgID, filename))
			return a, data, err
		}
	}
	return AttachmentMeta{}, nil, ErrNotFound
}

// ListMessages returns a page of the inbox's messages, newest first, and
// the total. The inbox must belong to the account (checked by the caller).
func (d *DB) ListMessages(inboxID string, p Page) ([]Message, int, error) {
	var page []string
	total := 0
	pfx := prefixKey(pInboxMessage + inboxID)
	err := d.scan(pfx, true, func(k, _ []byte) bool {
		if total >= p.Offset && len(page) < p.Limit {
			page = append(page, string(k[len(pfx):]))
		}
		total++
		return true
	})
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list messages: %w", err)
	}
	out := make([]Message, 0, len(page))
	for _, id := range page {
		var m Message
		if err := d.getRecord(id, &m); err != nil {
			return nil, 0, fmt.Errorf("cannot list messages: %s: %w", id, err)
		}
		out = append(out, m)
	}
	return out, total, nil
}
