package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
	"github.com/mailwire/mailwire/subs"
)

// knownEventTypes are the event types a WebSocket may subscribe to
// (PROTOCOL.md §5: inbox lifecycle types are webhook-only).
var knownEventTypes = []string{ingest.EventMessageReceived}

// command is a decoded client frame (PROTOCOL.md §2).
type command struct {
	Type        string
	InboxIDs    []string
	EventTypes  []string
	LastEventID string
	EventID     string
}

// wireCommand is the JSON shape; pointers tell absent from present.
type wireCommand struct {
	Type        *string   `json:"type"`
	InboxIDs    *[]string `json:"inbox_ids"`
	EventTypes  *[]string `json:"event_types"`
	LastEventID *string   `json:"last_event_id"`
	EventID     *string   `json:"event_id"`
}

// decodeCommand parses one client text frame. The error's text is sent to
// the client as is, so it says what was wrong. Unknown fields are ignored
// (forward compatibility); known fields must have their documented types.
func decodeCommand(b []byte) (command, error) {
	var w wireCommand
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return command{}, fmt.Errorf("field %q must be %s", te.Field, fieldKind(te.Field))
		case errors.As(err, &te):
			return command{}, errors.New("a frame must be a JSON object with a \"type\" field")
		case errors.Is(err, io.EOF):
			return command{}, errors.New("empty frame: a JSON object with a \"type\" field is expected")
		}
		return command{}, fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return command{}, errors.New("invalid JSON: data after the object")
	}
	if w.Type == nil || *w.Type == "" {
		return command{}, errors.New(`missing "type": expected subscribe, unsubscribe, ack or ping`)
	}
	c := command{Type: *w.Type}
	if w.InboxIDs != nil {
		c.InboxIDs = *w.InboxIDs
	}
	if w.EventTypes != nil {
		c.EventTypes = *w.EventTypes
	}
	if w.LastEventID != nil {
		c.LastEventID = *w.LastEventID
	}
	if w.EventID != nil {
		c.EventID = *w.EventID
	}
	switch c.Type {
	case "subscribe", "unsubscribe", "ping":
	case "ack":
		if c.EventID == "" {
			return command{}, errors.New(`ack needs "event_id"`)
		}
	default:
		return command{}, fmt.Errorf("unknown type %s: expected subscribe, unsubscribe, ack or ping", quoteShort(c.Type))
	}
	if len(c.InboxIDs) > maxSubscribeIDs {
		return command{}, fmt.Errorf("too many inbox_ids: at most %d per frame", maxSubscribeIDs)
	}
	return c, nil
}

func fieldKind(field string) string {
	switch field {
	case "inbox_ids", "event_types":
		return "an array of strings"
	}
	return "a string"
}

// handleCommand runs one client command. Commands of one connection run in
// order on nbio's task pool (never on the poller: they read Pebble).
func (c *wsConn) handleCommand(b []byte) {
	if c.isClosing() {
		return
	}
	m := c.hub.s.m
	cmd, err := decodeCommand(b)
	if err != nil {
		m.frameIn("invalid")
		c.sendError(err.Error())
		return
	}
	m.frameIn(cmd.Type)
	switch cmd.Type {
	case "ping":
		c.sendText("pong", []byte(`{"type":"pong"}`))
	case "subscribe":
		c.subscribe(&cmd)
	case "unsubscribe":
		c.unsubscribe(&cmd)
	case "ack":
		c.ack(&cmd)
	}
}

func (c *wsConn) subscribe(cmd *command) {
	s := c.hub.s
	var unknown []string
	for _, t := range cmd.EventTypes {
		if !slices.Contains(knownEventTypes, t) {
			unknown = append(unknown, t)
		}
	}
	if len(unknown) > 0 {
		c.sendError(fmt.Sprintf("unknown event_types %s (known: %s); subscription unchanged",
			listText(unknown), strings.Join(knownEventTypes, ", ")))
		return
	}
	var bad []string
	for _, id := range cmd.InboxIDs {
		if !ids.Valid(ids.Inbox, id) {
			bad = append(bad, id)
			continue
		}
		owned, err := s.deps.DB.InboxOwned(c.accountID, id)
		if err != nil {
			s.log.Error("cannot check inbox ownership", "error", err)
			c.sendError("internal error; subscription unchanged")
			return
		}
		if !owned {
			bad = append(bad, id)
		}
	}
	if len(bad) > 0 {
		c.sendError(fmt.Sprintf("inbox_ids not found in this account: %s; subscription unchanged", listText(bad)))
		return
	}
	replayFrom, replayErr := "", ""
	if cmd.LastEventID != "" {
		switch _, err := s.deps.DB.GetEventState(c.accountID, cmd.LastEventID); {
		case !ids.Valid(ids.Event, cmd.LastEventID):
			replayErr = "malformed last_event_id " + quoteShort(cmd.LastEventID) + "; subscription applied without replay"
		case errors.Is(err, store.ErrNotFound):
			replayErr = "unknown last_event_id " + cmd.LastEventID + " (not an event of this account, or expired); subscription applied without replay"
		case err != nil:
			s.log.Error("cannot read event", "error", err)
			replayErr = "internal error reading last_event_id; subscription applied without replay"
		default:
			replayFrom = cmd.LastEventID
		}
	}

	// Live events are held from before the subscription takes effect until
	// the subscribed frame and the replay are out (no gap, no reordering).
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return
	}
	var tooMany bool
	f := s.hub.idx.Update(c.accountID, c, func(f subs.Filter) subs.Filter {
		nf := f.Subscribe(cmd.InboxIDs, cmd.EventTypes)
		if len(nf.InboxIDs())+len(nf.ExcludedInboxIDs()) > maxSubscriptionIDs {
			tooMany = true
			return f
		}
		return nf
	})
	if tooMany {
		c.mu.Unlock()
		c.sendError(fmt.Sprintf("a subscription may name at most %d inboxes; subscription unchanged", maxSubscriptionIDs))
		return
	}
	c.mu.buffering = true
	c.mu.Unlock()

	c.sendText("subscribed", subscribedFrame(f))
	if replayErr != "" {
		c.sendError(replayErr)
	}
	var replayed map[string]int
	if replayFrom != "" {
		replayed = c.replay(replayFrom, f)
	}
	c.endBuffering(replayed)
}

// replay sends the stored events after from that match f, oldest first
// (PROTOCOL.md §6 Replay). It returns their ids, each with the number of
// the attempt that was next when it was read.
func (c *wsConn) replay(from string, f subs.Filter) map[string]int {
	s := c.hub.s
	limit := s.cfg.WS.ReplayLimit
	evs, err := s.deps.DB.EventsAfter(c.accountID, from, limit, limit*replayScanFactor, f.Matches)
	if err != nil {
		s.log.Error("cannot read events for replay", "error", err)
		c.sendError("internal error during replay")
		return nil
	}
	if len(evs) == 0 {
		return nil
	}
	idList := make([]string, len(evs))
	for i := range evs {
		idList[i] = evs[i].ID
	}
	// Pebble shows a batch before its fsync returned: never send an event
	// whose ingest has not been acknowledged.
	if !s.deps.Delivery.WaitDurable(idList, 10*time.Second) {
		s.log.Warn("replay waited too long for events being stored")
	}
	replayed := make(map[string]int, len(evs))
	now := time.Now()
	for i := range evs {
		ev := &evs[i]
		frame := encodeEventFrame(&ev.Event, max(1, ev.State.Attempts), now)
		if !c.send(frame) {
			return replayed
		}
		next := ev.State.Attempts + 1
		if ev.State.AwaitingAck {
			next = ev.State.Attempts // written already; no push will follow
		}
		replayed[ev.ID] = next
		s.m.frameOut("replay")
		s.m.wsReplayed.Inc()
	}
	return replayed
}

// endBuffering writes the live events held during a subscribe, except
// those the replay already sent, and goes back to direct writes.
func (c *wsConn) endBuffering(replayed map[string]int) {
	c.mu.Lock()
	buf := c.mu.liveBuf
	c.mu.liveBuf, c.mu.liveBytes, c.mu.buffering = nil, 0, false
	// A replayed event may be committed (so the scan saw it) but not yet
	// pushed live: that push comes after this point. Remember those still
	// in the delivery pipeline, with the attempt the push will carry, so
	// that push is dropped rather than sent twice; a push already held
	// here needs no entry. Pushes take c.mu, so none can slip between
	// this check and the flag.
	held := make(map[string]bool, len(buf))
	for _, lf := range buf {
		held[lf.evtID] = true
	}
	c.mu.replayed = nil
	for id, n := range replayed {
		if !held[id] && c.hub.s.deps.Delivery.InFlight(id) {
			if c.mu.replayed == nil {
				c.mu.replayed = make(map[string]int)
			}
			c.mu.replayed[id] = n
		}
	}
	slow := false
	if !c.mu.closing {
		for _, lf := range buf {
			if _, dup := replayed[lf.evtID]; dup {
				continue
			}
			var ok bool
			if ok, slow = c.writeLocked(lf.frame); !ok {
				break
			}
		}
	}
	c.mu.Unlock()
	if slow {
		c.slowConsumer()
	}
}

func (c *wsConn) unsubscribe(cmd *command) {
	for _, id := range cmd.InboxIDs {
		if !ids.Valid(ids.Inbox, id) {
			c.sendError("malformed inbox id " + quoteShort(id) + "; subscription unchanged")
			return
		}
	}
	var removed []string
	var tooMany bool
	c.mu.Lock()
	if c.mu.closing {
		c.mu.Unlock()
		return
	}
	c.hub.s.hub.idx.Update(c.accountID, c, func(f subs.Filter) subs.Filter {
		nf, rem := f.Unsubscribe(cmd.InboxIDs)
		if len(nf.InboxIDs())+len(nf.ExcludedInboxIDs()) > maxSubscriptionIDs {
			tooMany = true
			return f
		}
		removed = rem
		return nf
	})
	c.mu.Unlock()
	if tooMany {
		c.sendError(fmt.Sprintf("a subscription may name at most %d inboxes; subscription unchanged", maxSubscriptionIDs))
		return
	}
	if removed == nil {
		removed = []string{}
	}
	c.sendText("unsubscribed", mustFrameJSON(struct {
		Type     string   `json:"type"`
		InboxIDs []string `json:"inbox_ids"`
	}{"unsubscribed", removed}))
}

func (c *wsConn) ack(cmd *command) {
	s := c.hub.s
	if !ids.Valid(ids.Event, cmd.EventID) {
		c.sendError("malformed event_id " + quoteShort(cmd.EventID))
		return
	}
	if _, err := s.deps.DB.GetEventState(c.accountID, cmd.EventID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			c.sendError("unknown event_id " + cmd.EventID)
		} else {
			c.sendError("internal error recording the ack")
		}
		return
	}
	if err := s.deps.Delivery.Ack(c.accountID, cmd.EventID); err != nil {
		c.sendError("cannot record the ack: " + err.Error())
	}
}

// subscribedFrame is the subscribed answer: the whole active subscription
// ([] = all). Exclusions under "all" are listed in excluded_inbox_ids
// (an extension; absent when there are none).
func subscribedFrame(f subs.Filter) []byte {
	v := struct {
		Type       string   `json:"type"`
		InboxIDs   []string `json:"inbox_ids"`
		EventTypes []string `json:"event_types"`
		Excluded   []string `json:"excluded_inbox_ids,omitempty"`
	}{Type: "subscribed", InboxIDs: f.InboxIDs(), EventTypes: f.EventTypes(), Excluded: f.ExcludedInboxIDs()}
	if v.InboxIDs == nil || f.AllInboxes() {
		v.InboxIDs = []string{}
	}
	if v.EventTypes == nil || f.AllTypes() {
		v.EventTypes = []string{}
	}
	return mustFrameJSON(v)
}

func errorFrame(msg string) []byte {
	return mustFrameJSON(struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{"error", msg})
}

func mustFrameJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("BUG: cannot encode frame %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func listText(ids []string) string {
	q := make([]string, 0, len(ids))
	for i, id := range ids {
		if i == 20 {
			q = append(q, fmt.Sprintf("… (%d more)", len(ids)-20))
			break
		}
		q = append(q, quoteShort(id))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// encodeEventFrame encodes an attempt's payload as one text frame, header
// and payload in one buffer, ready to be written to every connection.
func encodeEventFrame(ev *store.Event, attempt int, at time.Time) []byte {
	// Reserve the longest header in front, encode the payload after it,
	// then write the real header right before the payload.
	buf := make([]byte, 10, 10+ev.PayloadLen())
	buf = ev.AppendPayload(buf, attempt, at)
	plen := len(buf) - 10
	start := 10 - frameHeaderLen(plen)
	putFrameHeader(buf[start:], opText, plen)
	return buf[start:]
}
