package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
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
// copies: 96 MiB for a 35 MiB batch), and a message record with large
// bodies is encoded straight into it (messageRecord). What remains is the
// batch: one copy of the raw bytes, attachments and bodies, which Pebble
// needs contiguous.
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

	// direct lets large message records be encoded in place; the loop runs
	// a second time, without, only if that failed (which would be a bug).
	for direct := true; ; direct = false {
		recs := make([]messageRecord, len(items))
		size := batchHeaderBytes
		for i := range items {
			it := &items[i]
			m := &it.Message
			recs[i] = newMessageRecord(m, direct)
			size += batchRecordBytes(len(pMessage)+len(m.ID), recs[i].size())
			size += valueRecordBytes(len(pRaw)+len(m.ID), len(it.Raw))
			for j, a := range m.Attachments {
				size += valueRecordBytes(len(pAttachment)+len(m.ID)+1+len(a.Filename), len(it.Attachments[j]))
			}
			size += threadKeysBytes(m, it.NewThread)
			for _, ref := range it.ThreadRefs {
				size += batchRecordBytes(len(pThread)+len(m.InboxID)+1+len(ref), len(m.ThreadID))
			}
			size += newEventBytes(&it.Event, it.State)
			size += batchRecordBytes(len(pIdempotency)+len(m.InboxID)+1+len(it.IdempotencyKey), len(it.Reply))
		}
		b := d.pdb.NewBatchWithSize(size)
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
			ok = recs[i].set(b, key2(pMessage, m.ID))
			putValue(b, key2(pRaw, m.ID), it.Raw)
			for j, a := range m.Attachments {
				putValue(b, key(pAttachment+m.ID, a.Filename), it.Attachments[j])
			}
		}
		if ok {
			return d.group.commit(b)
		}
		_ = b.Close()
		d.log.Error("BUG: message record longer or shorter than computed; encoding it apart")
	}
}

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
	if err := d.getJSON(key2(pMessage, id), &m); err != nil {
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
		if err := d.getJSON(key2(pMessage, id), &m); err != nil {
			return nil, 0, fmt.Errorf("cannot list messages: %s: %w", id, err)
		}
		out = append(out, m)
	}
	return out, total, nil
}
