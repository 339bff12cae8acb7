package engine

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// The pull API's reads (GET /v1/events/stream, API.md): an account's
// events after a cursor, in stored order, from the event log.
//
// No gap, no duplicate: a read stops below the account's stable bound
// (every event below it is durable and none can still appear there), and
// the cursor it returns is the last event it returned, or a position it
// has examined everything up to. The next read starts strictly after the
// cursor, so an event being stored during a read is either below the
// bound of a later read or was returned by this one.

// pullQuery is one pull: whose events, after which cursor, which ones.
type pullQuery struct {
	accountID string
	// after is the cursor: events with a greater id are returned.
	after string
	limit int
	// inboxes and types filter (nil: all).
	inboxes []string
	types   []string
}

func (q *pullQuery) filtered() bool { return q.inboxes != nil || q.types != nil }

// match is the query's filter for EventsAfter and the pull hub.
func (q *pullQuery) match(inbox, typ string) bool {
	return (q.inboxes == nil || slices.Contains(q.inboxes, inbox)) && (q.types == nil || slices.Contains(q.types, typ))
}

// pullPage is what a read found.
type pullPage struct {
	events []store.StoredEvent
	cursor string
}

// pullRead reads the events after q.after: at most q.limit, at most
// pullMaxPageBytes of payload (at least one event), below the stable
// bound. The cursor it returns never goes backwards.
func (s *Server) pullRead(q *pullQuery) (pullPage, error) {
	bound := s.deps.Delivery.StableBound(q.accountID)
	var match func(inbox, typ string) bool
	examined, matched := 0, 0
	if q.filtered() {
		// Counted, to know whether the scan reached the bound: it stops
		// only there, at limit matches or at scanLimit records.
		match = func(inbox, typ string) bool {
			examined++
			ok := q.match(inbox, typ)
			if ok {
				matched++
			}
			return ok
		}
	}
	scanLimit := q.limit * pullScanFactor
	evs, more, err := s.deps.DB.EventsAfter(q.accountID, q.after, bound, q.limit, scanLimit, match)
	if err != nil {
		return pullPage{}, err
	}
	reachedBound := matched < q.limit && examined < scanLimit
	truncated := false
	size := 0
	for i := range evs {
		size += evs[i].PayloadLen()
		if i > 0 && size > pullMaxPageBytes {
			evs, truncated = evs[:i], true
			break
		}
	}
	p := pullPage{events: evs, cursor: q.after}
	switch {
	case truncated || len(evs) == q.limit:
		// More may follow right after the last one returned.
		p.cursor = evs[len(evs)-1].ID
	case more != "":
		// The scan stopped at its bound on examined events (a narrow
		// filter): resume after the last one examined, matching or not.
		p.cursor = more
	case q.filtered() && reachedBound && bound != "":
		// Everything below the bound was examined; the filter skipped
		// the rest: move past it, so a narrow filter does not rescan.
		p.cursor = ids.Pred(ids.Event, bound)
	case len(evs) > 0:
		p.cursor = evs[len(evs)-1].ID
	}
	if bound != "" && p.cursor < q.after {
		// Ids are in stored order only on a store with a bound.
		p.cursor = q.after
	}
	return p, nil
}

// pullStart is the cursor of a pull without one: "now". On a store with
// a stable bound (Pebble: ids in stored order), just below the bound:
// every event already durable is behind it, and one still being stored
// (at or above the bound) ahead of it, so the next pull from this cursor
// sees it. A store without one (the cluster store: its order is the
// log's, StableBound is "") positions a cursor by the event it names:
// "now" is the account's newest event there, or, for an account with no
// event yet, an id of the present moment (which that store resumes by
// time; an event stored at the same moment on another node, with an
// earlier id, may fall behind it).
func (s *Server) pullStart(accountID string) (string, error) {
	if bound := s.deps.Delivery.StableBound(accountID); bound != "" {
		return ids.Pred(ids.Event, bound), nil
	}
	evs, _, err := s.deps.DB.ListEvents(accountID, store.EventFilter{}, store.Page{Limit: 1})
	if err != nil {
		return "", err
	}
	if len(evs) > 0 {
		return evs[0].ID, nil
	}
	return ids.Pred(ids.Event, ids.NewAt(ids.Event, time.Now())), nil
}

// appendPullBody appends the answer's JSON: {"data":[...],"cursor":...}.
// Each payload is the event's as delivered (PROTOCOL.md §5) with attempt
// the number of delivery attempts so far (at least 1) and delivered_at
// the time of this answer: a pull is not an attempt.
func appendPullBody(dst []byte, p pullPage, now time.Time) []byte {
	dst = append(dst, `{"data":[`...)
	for i := range p.events {
		if i > 0 {
			dst = append(dst, ',')
		}
		ev := &p.events[i]
		dst = ev.AppendPayload(dst, max(1, ev.State.Attempts), now)
	}
	dst = append(dst, `],"cursor":`...)
	dst = strconv.AppendQuote(dst, p.cursor)
	return append(dst, "}\n"...)
}

func pullBodyLen(p pullPage) int {
	n := 64
	for i := range p.events {
		n += p.events[i].PayloadLen() + 1
	}
	return n
}

// parsePull reads the query of GET /v1/events/stream: after, wait,
// limit, inboxId and types (API.md). Inboxes must be the account's.
func (s *Server) parsePull(r *req) (*pullQuery, time.Duration, error) {
	qs := r.URL.Query()
	q := &pullQuery{accountID: r.accountID, limit: maxListLimit}
	if v := qs.Get("after"); v != "" {
		if !ids.Valid(ids.Event, v) {
			return nil, 0, errf(http.StatusBadRequest, codeBadRequest, "malformed after "+quoteShort(v)+" (expected an event id, evt_…, such as a cursor)")
		}
		q.after = v
	}
	if v := qs.Get("limit"); v != "" {
		n, err := parseLimit(v, maxListLimit)
		if err != nil {
			return nil, 0, err
		}
		q.limit = n
	}
	wait, err := parseWait(qs.Get("wait"))
	if err != nil {
		return nil, 0, err
	}
	if v := qs.Get("inboxId"); v != "" {
		for _, id := range strings.Split(v, ",") {
			id = strings.TrimSpace(id)
			if !ids.Valid(ids.Inbox, id) {
				return nil, 0, errf(http.StatusBadRequest, codeBadRequest, "malformed inboxId "+quoteShort(id))
			}
			owned, err := s.deps.DB.InboxOwned(r.accountID, id)
			if err != nil {
				return nil, 0, err
			}
			if !owned {
				return nil, 0, errf(http.StatusNotFound, codeNotFound, "inbox "+id+" not found")
			}
			if !slices.Contains(q.inboxes, id) {
				q.inboxes = append(q.inboxes, id)
			}
		}
	}
	if v := qs.Get("types"); v != "" {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !slices.Contains(ws.KnownEventTypes, t) {
				return nil, 0, errf(http.StatusBadRequest, codeBadRequest, "unknown event type "+quoteShort(t)+" (known: "+strings.Join(ws.KnownEventTypes, ", ")+")")
			}
			if !slices.Contains(q.types, t) {
				q.types = append(q.types, t)
			}
		}
	}
	return q, wait, nil
}

// parseWait reads ?wait: a Go duration ("30s") or seconds ("30", "2.5");
// absent means 0 (answer at once); above pullMaxWait it is clamped.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != f { // NaN
			return 0, errf(http.StatusBadRequest, codeBadRequest, "wait must be a duration (30s) or a number of seconds (30), not "+quoteShort(v))
		}
		if f > pullMaxWait.Seconds() {
			f = pullMaxWait.Seconds()
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 {
		return 0, errf(http.StatusBadRequest, codeBadRequest, "wait must not be negative")
	}
	return min(d, pullMaxWait), nil
}
