package jsstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// A message record (after the payload in an event's body) is its parts
// in order: the message
// (JSON), the raw bytes, then each attachment. Each part is a kind byte
// (partInline, partBlob), a uvarint length and, inline, the bytes; a blob
// part's bytes are the object blobName(message id, part) in bucketBlobs.
const (
	partInline = 0
	partBlob   = 1
)

func blobName(msgID string, part int) string { return msgID + "." + strconv.Itoa(part) }

// encodeRecord lays the parts out, moving the largest to blobs until the
// record fits in limit bytes.
func encodeRecord(parts [][]byte, limit int) (rec []byte, blobs []int) {
	total := 0
	for _, p := range parts {
		total += len(p) + binary.MaxVarintLen64 + 1
	}
	if total > limit {
		order := make([]int, len(parts))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return len(parts[b]) - len(parts[a]) })
		for _, i := range order {
			if total <= limit {
				break
			}
			blobs = append(blobs, i)
			total -= len(parts[i])
		}
		slices.Sort(blobs)
	}
	rec = make([]byte, 0, total)
	for i, p := range parts {
		if slices.Contains(blobs, i) {
			rec = append(rec, partBlob)
			rec = binary.AppendUvarint(rec, uint64(len(p)))
			continue
		}
		rec = append(rec, partInline)
		rec = binary.AppendUvarint(rec, uint64(len(p)))
		rec = append(rec, p...)
	}
	return rec, blobs
}

// recordPart is one part of a decoded record: its bytes, or the length of
// its blob.
type recordPart struct {
	data []byte
	blob bool
	n    int
}

func decodeRecord(rec []byte) ([]recordPart, error) {
	var out []recordPart
	for len(rec) > 0 {
		kind := rec[0]
		n, k := binary.Uvarint(rec[1:])
		if k <= 0 {
			return nil, errors.New("corrupt message record")
		}
		rec = rec[1+k:]
		switch kind {
		case partInline:
			if uint64(len(rec)) < n {
				return nil, errors.New("corrupt message record")
			}
			out = append(out, recordPart{data: rec[:n:n], n: int(n)})
			rec = rec[n:]
		case partBlob:
			out = append(out, recordPart{blob: true, n: int(n)})
		default:
			return nil, errors.New("corrupt message record")
		}
	}
	return out, nil
}

// publish stores one record durably (the PubAck with the stream's
// replicas), retrying through leader changes and lost servers until ctx
// ends. Each try waits at most publishAttemptTimeout (plus 2 s per
// MiB) for its ack: a publish whose server went away (its ack lost, the
// record maybe stored by the stream's new leader) is sent again with the
// same Nats-Msg-Id, which the stream answers as a duplicate of the stored
// one (with its sequence), or, while the first is still being
// replicated, "in process" (retried after a pause). In a clustered
// stream the leader checks Msg-Ids when it proposes a record; a new
// leader applies its whole log before it takes writes (nats-server 2.11
// and later), so a try sent twice is stored once. So a lost ack becomes
// an acknowledgement, not a refusal of something stored.
//
// Once a try may have reached a server (it timed out, or its connection
// went), every failure after it is reported store.ErrUnconfirmed ("may
// have been stored"), never plain store.ErrUnavailable ("nothing was
// stored").
func (s *Store) publish(ctx context.Context, m *nats.Msg, id string) (*jetstream.PubAck, error) {
	t0 := time.Now()
	mayHaveLanded := false
	for try := 0; ; try++ {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(id), jetstream.WithRetryAttempts(20), jetstream.WithRetryWait(250 * time.Millisecond)}
		actx, cancel := context.WithTimeout(ctx, publishAttemptTimeout+perMiB(len(m.Data)))
		ack, err := s.js.PublishMsg(actx, m, opts...)
		cancel()
		if err == nil {
			s.m.publish.UpdateDuration(t0)
			return ack, nil
		}
		mayHaveLanded = mayHaveLanded || sentUnanswered(err)
		final := !retryablePublish(err)
		if final || ctx.Err() != nil {
			s.m.pubErrors.Inc()
			if mayHaveLanded {
				return nil, fmt.Errorf("%w (%w): cannot store %s: %v", store.ErrUnavailable, store.ErrUnconfirmed, m.Subject, err)
			}
			return nil, s.unavailable("store "+m.Subject, err)
		}
		s.m.pubRetries.Inc()
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(try+1)*100*time.Millisecond, time.Second)):
		}
	}
}

// perMiB is the extra time a write of n bytes gets on top of its bound:
// 2 s per MiB (an R3 stream that fsyncs every write, on a loaded machine,
// stores a few MiB a second).
func perMiB(n int) time.Duration { return time.Duration(n>>20) * 2 * time.Second }

func attachmentBytes(atts [][]byte) (n int) {
	for _, a := range atts {
		n += len(a)
	}
	return n
}

// retryablePublish reports whether a failed publish may succeed if sent
// again: not an answer from JetStream itself (a stream limit, a wrong
// subject), which would be the same the next time — except "duplicate
// message id is in process" (an earlier try of this record is being
// replicated: the next try gets its ack) and "JetStream temporarily
// unavailable" (a leader election) — and not a message the client
// refuses to send (too large for the server, a bad subject).
func retryablePublish(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jsErrDuplicateInProcess || apiErr.ErrorCode == jsErrClusterNotAvailable
	}
	return !errors.Is(err, nats.ErrMaxPayload) && !errors.Is(err, nats.ErrBadSubject) &&
		!errors.Is(err, nats.ErrHeadersNotSupported) && !errors.Is(err, nats.ErrInvalidMsg)
}

// sentUnanswered reports whether a failed try may have reached a server
// and been stored: it was sent and no answer came (a timeout, the
// connection lost). No responders, an answer from JetStream, or a
// message the client refused to send mean it was not stored.
func sentUnanswered(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr):
		// "In process": the earlier try is being stored.
		return apiErr.ErrorCode == jsErrDuplicateInProcess
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return false
	default:
		return retryablePublish(err)
	}
}

// JetStream error codes publish tells apart.
const (
	// jsErrDuplicateInProcess is JSStreamDuplicateMessageConflict (409):
	// a publish whose Msg-Id matches one still being proposed.
	jsErrDuplicateInProcess jetstream.ErrorCode = 10158
	// jsErrClusterNotAvailable is JSClusterNotAvail (503): JetStream is
	// temporarily unavailable (no meta leader yet).
	jsErrClusterNotAvailable jetstream.ErrorCode = 10008
)

// RenderEvent implements store.EventLog.
func (s *Store) RenderEvent(evtID string, m *store.Message) (head, tail []byte) {
	return store.RenderMessageEventAt(evtID, m, s.maxEventBytes, strings.TrimSuffix(s.opts.PublicURL, "/"))
}

// Append implements store.EventLog: per item, its blobs (object store),
// then its message record, then its event record, each acknowledged by
// JetStream with the stream's replicas before the next; the idempotent
// reply last. An item's event never exists without its message; a crash
// between the two leaves a message record without an event, which ages
// out with the stream (never shown: messages are found through events).
func (s *Store) Append(accounts []string, build func(evtIDs []string) ([]store.Inbound, error)) error {
	if err := s.writable(); err != nil {
		return err
	}
	evtIDs := make([]string, len(accounts))
	for i := range evtIDs {
		evtIDs[i] = ids.New(ids.Event)
	}
	items, err := build(evtIDs)
	if err != nil {
		return err
	}
	if len(items) != len(accounts) {
		return fmt.Errorf("BUG: %d items for %d event ids", len(items), len(accounts))
	}
	if err := s.writable(); err != nil {
		return err
	}
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.appendOne(&items[i])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Store) appendOne(it *store.Inbound) error {
	ctx, cancel := context.WithTimeout(s.ctx, publishTimeout+perMiB(len(it.Raw)+attachmentBytes(it.Attachments)))
	defer cancel()
	m := &it.Message
	if len(it.Event.Head)+len(it.Event.Tail)+4096 > s.maxPayload {
		return fmt.Errorf("event of %d bytes over NATS's max_payload (%d): lower --max-event-bytes", len(it.Event.Head)+len(it.Event.Tail), s.maxPayload)
	}
	msgJSON, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("cannot encode message: %w", err)
	}
	parts := append([][]byte{msgJSON, it.Raw}, it.Attachments...)
	// The record shares the event's NATS message with the payload.
	payloadLen := len(it.Event.Head) + len(it.Event.Tail)
	rec, blobs := encodeRecord(parts, min(recordInlineMax, s.maxPayload-payloadLen-8<<10))
	if payloadLen+len(rec)+4096 > s.maxPayload {
		return fmt.Errorf("message of %d parts does not fit NATS's max_payload (%d) with its event: lower --max-event-bytes or --max-mime-parts", len(parts), s.maxPayload)
	}
	for _, i := range blobs {
		if _, err := s.blobs.PutBytes(ctx, blobName(m.ID, i), parts[i]); err != nil {
			return s.unavailable("store a message part", err)
		}
	}
	ev := &it.Event
	em := nats.NewMsg(subjEvent + "." + ev.AccountID + "." + ev.InboxID)
	em.Header.Set(hAccount, ev.AccountID)
	em.Header.Set(hInbox, ev.InboxID)
	em.Header.Set(hType, ev.Type)
	em.Header.Set(hMessage, ev.MessageID)
	if len(blobs) > 0 {
		em.Header.Set(hBlobs, joinInts(blobs))
	}
	if len(it.ThreadRefs) > 0 && it.ThreadRefs[0] != "" {
		em.Header.Set(hRFCID, it.ThreadRefs[0])
	}
	if m.ThreadID != "" {
		em.Header.Set(hThread, m.ThreadID)
		em.Header.Set(hSubject, subjectHeader(m.Subject)) // threads.go
	}
	em.Header.Set(hHeadLen, strconv.Itoa(len(ev.Head)))
	em.Header.Set(hPayloadLen, strconv.Itoa(len(ev.Head)+len(ev.Tail)))
	body := make([]byte, 0, len(ev.Head)+len(ev.Tail)+len(rec))
	body = append(append(append(body, ev.Head...), ev.Tail...), rec...)
	em.Data = body
	eack, err := s.publish(ctx, em, ev.ID)
	if err != nil {
		return err
	}
	s.m.stored.Inc()
	// Read-your-writes on this node: the 202/250 goes out once the node's
	// own index (lists, replay, GET) has the event.
	s.idx.waitApplied(eack.Sequence, catchUpWait)
	if it.IdempotencyKey != "" {
		if _, err := s.idemKV.Put(ctx, it.Message.InboxID+"."+it.IdempotencyKey, it.Reply); err != nil {
			// The message is stored: a retry of the request would store
			// it again (at-least-once), which is what a client expects
			// when it sees an error.
			return s.unavailable("store the idempotency key", err)
		}
	}
	return nil
}

// hBlobs lists the parts of the message record kept as blobs.
const hBlobs = "Mw-Blobs"

func joinInts(v []int) string {
	var b strings.Builder
	for i, n := range v {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// Idempotent implements store.EventLog.
func (s *Store) Idempotent(inboxID, keyHash string) ([]byte, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	e, err := s.idemKV.Get(ctx, inboxID+"."+keyHash)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, s.unavailable("read an idempotency key", err)
	}
	return e.Value(), nil
}

// ThreadOf implements store.EventLog (from the node's index).
func (s *Store) ThreadOf(inboxID string, refs []string) (string, error) {
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	for _, r := range refs {
		if t, ok := s.idx.threads[inboxID+" "+r]; ok && r != "" {
			return t, nil
		}
	}
	return "", nil
}

// rawMsg is a stored stream message.
type rawMsg struct {
	header nats.Header
	data   []byte
}

// getMsg reads a message by sequence: a direct get (any replica), then
// the stream leader when a lagging replica does not have it yet.
func (s *Store) getMsg(st jetstream.Stream, name string, seq uint64) (rawMsg, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	m, err := st.GetMsg(ctx, seq)
	if err == nil {
		return rawMsg{header: m.Header, data: m.Data}, nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return rawMsg{}, s.unavailable("read "+name, err)
	}
	return s.leaderGet(ctx, name, seq)
}

// leaderGet reads a message from the stream's leader (never stale).
func (s *Store) leaderGet(ctx context.Context, stream string, seq uint64) (rawMsg, error) {
	req, _ := json.Marshal(map[string]uint64{"seq": seq})
	r, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return rawMsg{}, s.unavailable("read "+stream, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(r.Data, &resp); err != nil {
		return rawMsg{}, fmt.Errorf("cannot decode a message of %s: %w", stream, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return rawMsg{}, store.ErrNotFound
		}
		return rawMsg{}, s.unavailable("read "+stream, errors.New(resp.Error.Description))
	}
	if resp.Message == nil {
		return rawMsg{}, store.ErrNotFound
	}
	var h nats.Header
	if len(resp.Message.Header) > 0 {
		if h, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return rawMsg{}, fmt.Errorf("cannot decode a message of %s: %w", stream, err)
		}
	}
	return rawMsg{header: h, data: resp.Message.Data}, nil
}

// record reads a message record's parts (from its event's message).
func (s *Store) record(e entry) ([]recordPart, error) {
	m, err := s.getMsg(s.events, streamEvents, e.seq)
	if err != nil {
		return nil, err
	}
	if m.header.Get(hMsgID) != e.id {
		return nil, store.ErrNotFound // purged
	}
	_, rec, ok := splitRecord(m.header, m.data)
	if !ok || rec == nil {
		return nil, fmt.Errorf("the event message of %s holds no readable message record", e.id)
	}
	return decodeRecord(rec)
}

// part returns a record part's bytes, reading its blob when it is one.
func (s *Store) part(msgID string, parts []recordPart, i int) ([]byte, error) {
	if i >= len(parts) {
		return nil, store.ErrNotFound
	}
	p := parts[i]
	if !p.blob {
		return p.data, nil
	}
	// A replica may not have the object yet right after it was written.
	var err error
	for try := 0; try < 20; try++ {
		ctx, cancel := context.WithTimeout(s.ctx, publishTimeout+perMiB(p.n))
		var b []byte
		b, err = s.blobs.GetBytes(ctx, blobName(msgID, i))
		cancel()
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, jetstream.ErrObjectNotFound) && !errors.Is(err, jetstream.ErrDigestMismatch) {
			break
		}
		time.Sleep(50 * time.Millisecond) // a replica catching up
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, store.ErrNotFound
	}
	return nil, s.unavailable("read a message part", err)
}

func (s *Store) messageOf(e entry) (store.Message, []recordPart, error) {
	parts, err := s.record(e)
	if err != nil {
		return store.Message{}, nil, err
	}
	b, err := s.part(e.msg, parts, 0)
	if err != nil {
		return store.Message{}, nil, err
	}
	var m store.Message
	if err := json.Unmarshal(b, &m); err != nil {
		return store.Message{}, nil, fmt.Errorf("cannot decode message %s: %w", e.msg, err)
	}
	return m, parts, nil
}

// GetMessage implements store.EventLog.
func (s *Store) GetMessage(accountID, id string) (store.Message, error) {
	e, ok := s.idx.messageWait(id)
	if !ok || e.acc != accountID {
		return store.Message{}, store.ErrNotFound
	}
	m, _, err := s.messageOf(e)
	return m, err
}

// GetRaw implements store.EventLog.
func (s *Store) GetRaw(accountID, id string) ([]byte, error) {
	e, ok := s.idx.messageWait(id)
	if !ok || e.acc != accountID {
		return nil, store.ErrNotFound
	}
	parts, err := s.record(e)
	if err != nil {
		return nil, err
	}
	return s.part(id, parts, 1)
}

// GetAttachment implements store.EventLog.
func (s *Store) GetAttachment(accountID, msgID, filename string) (store.AttachmentMeta, []byte, error) {
	e, ok := s.idx.messageWait(msgID)
	if !ok || e.acc != accountID {
		return store.AttachmentMeta{}, nil, store.ErrNotFound
	}
	m, parts, err := s.messageOf(e)
	if err != nil {
		return store.AttachmentMeta{}, nil, err
	}
	for i, a := range m.Attachments {
		if a.Filename == filename {
			b, err := s.part(msgID, parts, 2+i)
			return a, b, err
		}
	}
	return store.AttachmentMeta{}, nil, store.ErrNotFound
}

// ListMessages implements store.EventLog (newest first).
func (s *Store) ListMessages(inboxID string, p store.Page) ([]store.Message, int, error) {
	s.idx.mu.RLock()
	all := s.idx.byInbox[inboxID]
	total := len(all)
	var page []entry
	for i := total - 1 - p.Offset; i >= 0 && (p.Limit <= 0 || len(page) < p.Limit); i-- {
		page = append(page, *all[i])
	}
	s.idx.mu.RUnlock()
	out := make([]store.Message, len(page))
	errs := make([]error, len(page))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, e := range page {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], _, errs[i] = s.messageOf(e)
		}()
	}
	wg.Wait()
	kept := out[:0]
	var failed []error
	for i, err := range errs {
		switch {
		case err == nil:
			kept = append(kept, out[i])
		case errors.Is(err, store.ErrNotFound):
			// Purged (inbox deleted, aged out) since the index listed it.
		default:
			failed = append(failed, err)
		}
	}
	if err := errors.Join(failed...); err != nil {
		return nil, 0, fmt.Errorf("cannot list messages: %w", err)
	}
	return kept, total, nil
}

// GetEvent implements store.EventLog.
func (s *Store) GetEvent(id string) (store.Event, error) {
	e, ok := s.idx.eventWait(id)
	if !ok {
		return store.Event{}, store.ErrNotFound
	}
	return s.eventOf(e)
}

// eventOf loads an indexed event's payload (cache, else the stream).
func (s *Store) eventOf(e entry) (store.Event, error) {
	ev := store.Event{ID: e.id, AccountID: e.acc, InboxID: e.inbox, Type: e.typ, MessageID: e.msg}
	if data, ok := s.idx.payloads.get(e.id); ok {
		ev.Head, ev.Tail = splitAt(data, s.idx.headLen(e.id, data))
		return ev, nil
	}
	m, err := s.getMsg(s.events, streamEvents, e.seq)
	if err != nil {
		return store.Event{}, err
	}
	if m.header.Get(hMsgID) != e.id {
		return store.Event{}, store.ErrNotFound
	}
	payload, _, ok := splitRecord(m.header, m.data)
	if !ok {
		return store.Event{}, fmt.Errorf("the event message of %s does not match its header", e.id)
	}
	// A copy: the caller must not keep the record alive.
	ev.Head, ev.Tail = splitPayload(m.header, bytes.Clone(payload))
	return ev, nil
}

func splitAt(data []byte, n int) (head, tail []byte) {
	if n < 0 || n > len(data) {
		return data, nil
	}
	return data[:n:n], data[n:]
}

// headLen finds the head's end in a cached payload: the head ends right
// before `,"inbox_id":` (the first field of every tail).
func (x *index) headLen(_ string, data []byte) int {
	const mark = `,"inbox_id":`
	for i := 0; i+len(mark) <= len(data); i++ {
		if data[i] == ',' && string(data[i:i+len(mark)]) == mark {
			return i
		}
	}
	return -1
}

// GetEventState implements store.EventLog (read from the stream leader:
// never older than the last write).
func (s *Store) GetEventState(accountID, id string) (store.EventState, error) {
	e, ok := s.idx.eventWait(id)
	if !ok || e.acc != accountID {
		return store.EventState{}, store.ErrNotFound
	}
	v, _, err := s.loadState(e.id, e.inbox, e.typ)
	return v.st, err
}

// ListAttempts implements store.EventLog.
func (s *Store) ListAttempts(evtID string) ([]store.Attempt, error) {
	e, ok := s.idx.eventWait(evtID)
	if !ok {
		return nil, store.ErrNotFound
	}
	v, _, err := s.loadState(e.id, e.inbox, e.typ)
	return v.attempts, err
}

// EventsAfter implements store.EventLog: the account's events after
// afterID in log order (the stream's), from this node's index, which
// holds a prefix of the log: beforeID is not needed (StableBound is "")
// and ignored.
func (s *Store) EventsAfter(accountID, afterID, _ string, limit, scanLimit int, match func(inbox, typ string) bool) ([]store.StoredEvent, string, error) {
	if afterID != "" {
		s.idx.eventWait(afterID) // an id from another node a moment ago
	}
	x := s.idx
	x.mu.RLock()
	list := x.byAcc[accountID]
	start := 0
	if afterID != "" {
		if e, ok := x.byEvt[afterID]; ok && e.acc == accountID {
			start, _ = slices.BinarySearchFunc(list, e.seq, func(e *entry, seq uint64) int { return cmpU64(e.seq, seq) })
			start++
		} else {
			// Unknown (expired, or never stored here): resume by time.
			start, _ = slices.BinarySearchFunc(list, afterID, func(e *entry, id string) int { return strings.Compare(e.id, id) })
		}
	}
	var found []entry
	var states []store.EventState
	scanned := 0
	last := ""
	for i := start; i < len(list) && len(found) < limit && (scanLimit == 0 || scanned < scanLimit); i++ {
		e := list[i]
		scanned++
		last = e.id
		if match == nil || match(e.inbox, e.typ) {
			found = append(found, *e)
			states = append(states, x.stateOfLocked(e))
		}
	}
	x.mu.RUnlock()
	more := ""
	if scanLimit > 0 && scanned >= scanLimit && len(found) < limit {
		more = last
	}
	out := make([]store.StoredEvent, 0, len(found))
	for i, e := range found {
		ev, err := s.eventOf(e)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, store.StoredEvent{Event: ev, State: states[i]})
	}
	return out, more, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ListEvents implements store.EventLog (newest first, from the index).
func (s *Store) ListEvents(accountID string, f store.EventFilter, p store.Page) ([]store.EventSummary, int, error) {
	x := s.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	list := x.byAcc[accountID]
	var out []store.EventSummary
	total := 0
	for i := len(list) - 1; i >= 0; i-- {
		e := list[i]
		if f.InboxID != "" && e.inbox != f.InboxID {
			continue
		}
		st := x.stateOfLocked(e)
		if f.Status != "" && st.Status != f.Status {
			continue
		}
		if total >= p.Offset && len(out) < p.Limit {
			out = append(out, store.EventSummary{ID: e.id, State: st})
		}
		total++
	}
	return out, total, nil
}

// DeleteInbox implements store.Directory: the inbox leaves the directory
// (no new mail is taken for it), then its messages, events and
// idempotency keys are purged from the streams, and every node drops
// them from its index (through the directory watch). Delivery states age
// out with their bucket; a due attempt of a deleted event finds nothing
// and ends.
func (s *Store) DeleteInbox(accountID, id string) ([]string, error) {
	in, err := s.GetInbox(accountID, id)
	if err != nil {
		return nil, err
	}
	if err := s.writable(); err != nil {
		return nil, err
	}
	s.idx.mu.RLock()
	var evts []string
	var blobs []entry
	for _, e := range s.idx.byInbox[id] {
		evts = append(evts, e.id)
		blobs = append(blobs, *e)
	}
	s.idx.mu.RUnlock()
	ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
	defer cancel()
	if err := s.dir.del(kInbox + id); err != nil {
		return nil, fmt.Errorf("cannot delete inbox: %w", err)
	}
	_ = s.dir.del(kMailbox + hexString(in.MailboxName))
	if err := s.events.Purge(ctx, jetstream.WithPurgeSubject(subjEvent+"."+accountID+"."+id)); err != nil {
		return nil, fmt.Errorf("cannot delete inbox events: %w", s.unavailable("purge", err))
	}
	if st, err := s.js.Stream(ctx, "KV_"+bucketIdem); err == nil {
		_ = st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucketIdem+"."+id+".>"))
	}
	for _, e := range blobs {
		s.deleteBlobs(ctx, e)
	}
	s.idx.dropInbox(id) // this node at once; the others through the watch
	return evts, nil
}

// deleteBlobs deletes the blob parts of a message record.
func (s *Store) deleteBlobs(ctx context.Context, e entry) {
	for _, p := range e.blobs {
		if err := s.blobs.Delete(ctx, blobName(e.msg, p)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("cannot delete a message part", "message", e.msg, "error", err)
		}
	}
}
