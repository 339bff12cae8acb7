package engine

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mailwire/mailwire/engine/pull"
	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// streamEvents is GET /v1/events/stream (the pull API, API.md): the
// account's events after the cursor, oldest first; when there are none
// and wait > 0, the request is held (puller) until one is stored or the
// wait passes.
func (s *Server) streamEvents(w http.ResponseWriter, r *req) error {
	q, wait, err := s.parsePull(r)
	if err != nil {
		return err
	}
	if q.after == "" {
		if q.after, err = s.pullStart(r.accountID); err != nil {
			return err
		}
	}
	holdable := wait > 0 && r.Method == http.MethodGet
	h := s.puller.newHeld(q, wait, !r.Close)
	var addErr error
	if holdable {
		// Before the read: an event stored after it reaches the waiter
		// (pull package, "no-missed-wake").
		addErr = s.puller.hub.Add(&h.w)
	}
	page, err := s.pullRead(&h.q)
	if err != nil {
		if holdable && addErr == nil {
			s.puller.hub.Done(&h.w)
		}
		s.puller.outcome(pullError)
		return err
	}
	if len(page.events) > 0 || !holdable || addErr != nil {
		if holdable && addErr == nil {
			s.puller.hub.Done(&h.w)
		}
		switch {
		case len(page.events) > 0:
			s.puller.outcome(pullEvents)
		case errors.Is(addErr, pull.ErrTooMany):
			s.puller.outcome(pullTooMany)
			w.Header().Set("Retry-After", strconv.Itoa(pullRetryAfter))
			return errf(http.StatusTooManyRequests, codeTooManyRequests,
				"this account already holds "+strconv.Itoa(s.cfg.PullMaxHeldPerAccount)+" waiting pull requests (or the server its maximum); retry shortly or with wait=0")
		case errors.Is(addErr, pull.ErrDraining):
			return errDraining
		default:
			s.puller.outcome(pullEmpty)
		}
		return writePull(w, page)
	}
	return s.puller.hold(w, h, page)
}

// writePull answers a page through the ResponseWriter (not held).
func writePull(w http.ResponseWriter, page pullPage) error {
	body := appendPullBody(make([]byte, 0, pullBodyLen(page)), page, time.Now())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}

// ackResult is POST /v1/events/ack's answer: every id given, in one of
// the two lists.
type ackResult struct {
	// Acked are the events now delivered (including those that were).
	Acked []string `json:"acked"`
	// NotFound are ids of no event of the account (unknown, another
	// account's, or expired by retention).
	NotFound []string `json:"notFound"`
}

// ackEvents is POST /v1/events/ack {"eventIds":[...]}: each pending (or
// failed) event of the account becomes delivered, as with a WebSocket
// ack; unknown ids are reported, not fatal. It answers once the acks are
// durable.
func (s *Server) ackEvents(w http.ResponseWriter, r *req) error {
	var body struct {
		EventIDs []string `json:"eventIds"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if len(body.EventIDs) == 0 || len(body.EventIDs) > maxAckIDs {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, "eventIds must list 1 to "+strconv.Itoa(maxAckIDs)+" event ids")
	}
	for _, id := range body.EventIDs {
		if !ids.Valid(ids.Event, id) {
			return errf(http.StatusBadRequest, codeBadRequest, "malformed event id "+quoteShort(id)+" (expected evt_…)")
		}
	}
	res := ackResult{Acked: []string{}, NotFound: []string{}}
	errs := s.deps.Delivery.AckPulledAll(r.accountID, body.EventIDs)
	for i, id := range body.EventIDs {
		switch err := errs[i]; {
		case err == nil:
			res.Acked = append(res.Acked, id)
		case errors.Is(err, store.ErrNotFound):
			res.NotFound = append(res.NotFound, id)
		default:
			return err
		}
	}
	return writeJSON(w, http.StatusOK, res)
}
