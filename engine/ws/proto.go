package ws

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
	"github.com/mailwire/mailwire/subs"
)

// Backend is everything the WebSocket side needs from the rest of the
// server. Every method may block on storage; none is called with a
// connection's lock held.
type Backend interface {
	// UnownedInboxes returns the ids among ids that are not inboxes of
	// the account (ids are well-formed).
	UnownedInboxes(accountID string, ids []string) ([]string, error)
	// EventKnown reports whether evtID is a stored event of the account.
	EventKnown(accountID, evtID string) (bool, error)
	// Replay returns up to limit stored events of the account after
	// afterID whose (inbox, type) match, oldest first, all durable, and
	// none that an event still being stored could precede (so a client
	// that resumes from the last one returned misses nothing). When it
	// examined as many events as it may without finding limit matches,
	// more is the id of the last one examined (a cursor to resume from).
	Replay(accountID, afterID string, limit int, match func(inbox, typ string) bool) (evs []store.StoredEvent, more string, err error)
	// Ack records a client's ack of an event of the account
	// (store.ErrNotFound when there is no such event).
	Ack(accountID, evtID string) error
	// Replayed reports that a replay wrote a pending event to a
	// connection that does not ack: a successful WebSocket attempt.
	Replayed(accountID, evtID string, at time.Time)
	// InFlight reports whether a live push of evtID may still come.
	InFlight(evtID string) bool
	// KeyValid reports whether the API key id is still valid.
	KeyValid(keyID string) (bool, error)
}

// KnownEventTypes are the event types a WebSocket may subscribe to
// (PROTOCOL.md §5: inbox lifecycle types are webhook-only).
var KnownEventTypes = []string{store.EventMessageReceived}

// handleCommand runs one client command (decoded on the poller; err is
// the decoding error). Commands of one connection run in order on nbio's
// task pool (never on the poller: they read storage). Once the connection
// is closing nothing is answered, but an ack is still recorded: a client
// may ack and close in one breath (PROTOCOL.md §6 settles on the ack).
func (c *conn) handleCommand(cmd command, err error) {
	if c.isClosing() {
		if err == nil && cmd.Type == "ack" {
			c.hub.m.frameIn("ack")
			c.ack(&cmd)
		}
		return
	}
	if err != nil {
		c.hub.m.frameIn("invalid")
		c.sendError(err.Error())
		return
	}
	c.hub.m.frameIn(cmd.Type)
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

// checkInboxes returns an error message for ids that are malformed or
// not the account's ("" when all are fine).
func (c *conn) checkInboxes(list []string) (string, bool) {
	var bad, wellFormed []string
	for _, id := range list {
		if ids.Valid(ids.Inbox, id) {
			wellFormed = append(wellFormed, id)
		} else {
			bad = append(bad, id)
		}
	}
	if len(wellFormed) > 0 {
		unowned, err := c.hub.backend.UnownedInboxes(c.accountID, wellFormed)
		if err != nil {
			c.hub.log.Error("cannot check inbox ownership", "error", err)
			return "internal error", false
		}
		bad = append(bad, unowned...)
	}
	if len(bad) > 0 {
		return "inbox_ids not found in this account: " + listText(bad), false
	}
	return "", true
}

func (c *conn) subscribe(cmd *command) {
	var unknown []string
	for _, t := range cmd.EventTypes {
		if !slices.Contains(KnownEventTypes, t) {
			unknown = append(unknown, t)
		}
	}
	if len(unknown) > 0 {
		c.sendError(fmt.Sprintf("unknown event_types %s (known: %s); subscription unchanged",
			listText(unknown), strings.Join(KnownEventTypes, ", ")))
		return
	}
	if msg, ok := c.checkInboxes(cmd.InboxIDs); !ok {
		c.sendError(msg + "; subscription unchanged")
		return
	}
	replayFrom, replayErr := "", ""
	if cmd.LastEventID != "" {
		if !ids.Valid(ids.Event, cmd.LastEventID) {
			replayErr = "malformed last_event_id " + quoteShort(cmd.LastEventID) + "; subscription applied without replay"
		} else if known, err := c.hub.backend.EventKnown(c.accountID, cmd.LastEventID); err != nil {
			c.hub.log.Error("cannot read event", "error", err)
			replayErr = "internal error reading last_event_id; subscription applied without replay"
		} else if !known {
			replayErr = "unknown last_event_id " + cmd.LastEventID + " (not an event of this account, or expired); subscription applied without replay"
		} else {
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
	f := c.hub.idx.Update(c.accountID, c, func(f subs.Filter) subs.Filter {
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
	if cmd.Ack != nil {
		c.acking.Store(*cmd.Ack)
	}
	if c.mu.hold == nil { // commands run one at a time: never set here, but never dropped either
		c.mu.hold = &holdState{}
	}
	c.mu.Unlock()

	// The hold ends whatever happens (a panic in the replay included):
	// held pushes must be resolved, or their events stay claimed.
	var replayed map[string]int
	defer func() { c.endHold(replayed) }()
	c.sendText("subscribed", subscribedFrame(f))
	if replayErr != "" {
		c.sendError(replayErr)
	}
	if replayFrom != "" {
		replayed = c.replay(replayFrom, f)
	}
}

// replay sends the stored events after from that match f, oldest first
// (PROTOCOL.md §6 Replay). A pending event written to a connection that
// does not ack is a successful attempt (settling). It returns the ids
// sent, each with the number of the attempt a live push of it would
// carry.
func (c *conn) replay(from string, f subs.Filter) map[string]int {
	h := c.hub
	evs, more, err := h.backend.Replay(c.accountID, from, h.cfg.ReplayLimit, f.Matches)
	if err != nil {
		h.log.Error("cannot read events for replay", "error", err)
		c.sendError("internal error during replay")
		return nil
	}
	if more != "" {
		// Said before the events, so a client that stops at the error
		// still has a cursor that misses nothing.
		defer c.sendError("replay stopped early: too many stored events do not match this subscription; " +
			"subscribe again with last_event_id " + more + " for the rest")
	}
	if len(evs) == 0 {
		return nil
	}
	replayed := make(map[string]int, len(evs))
	now := time.Now()
	acking := c.acking.Load()
	for i := range evs {
		ev := &evs[i]
		st := ev.State
		pending := st.Status == store.StatusPending
		attempt, next := max(1, st.Attempts), st.Attempts+1
		switch {
		case pending && st.AwaitingAck:
			attempt, next = st.Attempts, st.Attempts // written already; no push follows
		case pending:
			attempt = st.Attempts + 1 // this write is the next attempt
		}
		c.addAckCredit() // before the frame can reach the client
		if !c.send(encodeEventFrame(&ev.Event, attempt, now)) {
			c.takeAckCredit()
			return replayed
		}
		replayed[ev.ID] = next
		h.m.frameOut("replay")
		h.m.replayed.Inc()
		// A pending event written to a connection that does not ack is
		// settled, unless an attempt of it is in flight: that attempt's
		// push is then dropped here as a duplicate and counts as written,
		// so its outcome records the success (no second record).
		if pending && !acking && !h.backend.InFlight(ev.ID) {
			h.backend.Replayed(c.accountID, ev.ID, now)
		}
	}
	return replayed
}

// endHold writes the live events held during a subscribe, except those
// the replay already sent, resolves their pushes, and goes back to direct
// writes.
func (c *conn) endHold(replayed map[string]int) {
	type res struct {
		tr      *heldPush
		written bool
	}
	acking := c.acking.Load()
	// A replayed event may be committed (so the scan saw it) but not yet
	// pushed live: that push comes after this point. Those still in the
	// delivery pipeline are remembered, with the attempt the push will
	// carry, so that push is dropped rather than sent twice. (Asked before
	// c.mu is taken: no Backend call runs under a connection's lock. An
	// event that leaves the pipeline meanwhile only leaves an entry that
	// matches nothing.)
	var inFlight map[string]int
	for id, n := range replayed {
		if c.hub.backend.InFlight(id) {
			if inFlight == nil {
				inFlight = make(map[string]int)
			}
			inFlight[id] = n
		}
	}
	c.mu.Lock()
	var held []heldFrame
	if c.mu.hold != nil { // nil when the connection ended meanwhile (end resolved them)
		held = c.mu.hold.held
	}
	c.mu.hold = nil
	// A push already held here needs no entry. Pushes take c.mu, so none
	// can slip in between taking the held frames and clearing the hold.
	for _, hf := range held {
		delete(inFlight, hf.evtID)
	}
	c.mu.replayed = inFlight
	if c.mu.closing {
		c.mu.replayed = nil
	}
	results := make([]res, 0, len(held))
	isSlow := false
	written := 0
	for _, hf := range held {
		if _, dup := replayed[hf.evtID]; dup {
			results = append(results, res{hf.tr, true}) // the replay wrote it here
			continue
		}
		if isSlow {
			results = append(results, res{hf.tr, false})
			continue
		}
		c.addAckCredit() // before the frame can reach the client
		r := c.writeLocked(hf.frame)
		isSlow = r == slow
		if r == wrote {
			written++
		} else {
			c.takeAckCredit()
		}
		results = append(results, res{hf.tr, r == wrote})
	}
	c.mu.Unlock()
	c.hub.m.delivered.Add(written)
	c.hub.m.frameOutN("event", written)
	if isSlow {
		c.slowConsumer()
	}
	for _, r := range results {
		if r.tr != nil {
			r.tr.resolve(r.written, acking)
		}
	}
}

func (c *conn) unsubscribe(cmd *command) {
	for _, id := range cmd.InboxIDs {
		if !ids.Valid(ids.Inbox, id) {
			c.sendError("malformed inbox id " + quoteShort(id) + "; subscription unchanged")
			return
		}
	}
	// Under "all", an id only joins the exclusion set if it is an inbox
	// of the account: the answer never names another account's inbox.
	names := cmd.InboxIDs
	if len(names) > 0 && c.hub.idx.Get(c.accountID, c).AllInboxes() {
		unowned, err := c.hub.backend.UnownedInboxes(c.accountID, names)
		if err != nil {
			c.hub.log.Error("cannot check inbox ownership", "error", err)
			c.sendError("internal error; subscription unchanged")
			return
		}
		names = slices.DeleteFunc(slices.Clone(names), func(id string) bool { return slices.Contains(unowned, id) })
		if len(names) == 0 {
			c.sendError("inbox_ids not found in this account: " + listText(cmd.InboxIDs) + "; subscription unchanged")
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
	c.hub.idx.Update(c.accountID, c, func(f subs.Filter) subs.Filter {
		nf, rem := f.Unsubscribe(names)
		if len(nf.InboxIDs())+len(nf.ExcludedInboxIDs()) > maxSubscriptionIDs {
			tooMany = true
			return f
		}
		removed = rem
		return nf
	})
	c.mu.Unlock()
	switch {
	case tooMany:
		c.sendError(fmt.Sprintf("a subscription may name at most %d inboxes; subscription unchanged", maxSubscriptionIDs))
		return
	case len(names) > 0 && len(removed) == 0:
		c.sendError("not subscribed to inbox_ids " + listText(cmd.InboxIDs) + "; subscription unchanged")
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

func (c *conn) ack(cmd *command) {
	if !ids.Valid(ids.Event, cmd.EventID) {
		c.sendError("malformed event_id " + quoteShort(cmd.EventID))
		return
	}
	err := c.hub.backend.Ack(c.accountID, cmd.EventID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.sendError("unknown event_id " + cmd.EventID)
	case err != nil:
		c.hub.log.Error("cannot record an ack", "error", err)
		c.sendError("cannot record the ack: internal error")
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
