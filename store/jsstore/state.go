package jsstore

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// stateValue is an event's value in bucketState: its delivery state and
// its attempt records (a bounded list: the schedule's length per cycle).
type stateValue struct {
	st       store.EventState
	attempts []store.Attempt
}

type stateJSON struct {
	S store.EventState `json:"s"`
	A []store.Attempt  `json:"a,omitempty"`
}

func encodeStateValue(v stateValue) []byte {
	return encode(stateJSON{S: v.st, A: v.attempts})
}

func decodeStateValue(b []byte) (stateValue, error) {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return stateValue{}, fmt.Errorf("cannot decode delivery state: %w", err)
	}
	return stateValue{st: j.S, attempts: j.A}, nil
}

func hexString(s string) string { return hex.EncodeToString([]byte(s)) }

// initialState is the state of an event no attempt has changed yet (it
// has no key in bucketState): pending, its first attempt due FirstDelay
// after the event.
func (s *Store) initialState(evtID, inboxID, typ string) store.EventState {
	t, _ := ids.Time(ids.Event, evtID)
	return store.EventState{InboxID: inboxID, Type: typ, Status: store.StatusPending,
		NextAt: t.UnixMilli() + s.firstDelay().Milliseconds()}
}

func (s *Store) firstDelay() time.Duration {
	if s.dl == nil {
		return 0
	}
	return time.Duration(s.dl.firstDelay.Load())
}

// loadState reads an event's state and its revision (0: no key yet, the
// initial state) from the bucket's leader.
func (s *Store) loadState(evtID, inboxID, typ string) (stateValue, uint64, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	e, err := s.stateKV.Get(ctx, evtID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return stateValue{st: s.initialState(evtID, inboxID, typ)}, 0, nil
	}
	if err != nil {
		return stateValue{}, 0, s.unavailable("read a delivery state", err)
	}
	v, err := decodeStateValue(e.Value())
	return v, e.Revision(), err
}

// errStale: the state changed between its read and the compare-and-set.
var errStale = errors.New("stale")

// casState writes v over revision rev (0: create).
func (s *Store) casState(evtID string, v stateValue, rev uint64) (uint64, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	var err error
	var nrev uint64
	if rev == 0 {
		nrev, err = s.stateKV.Create(ctx, evtID, encodeStateValue(v))
	} else {
		nrev, err = s.stateKV.Update(ctx, evtID, encodeStateValue(v), rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, errStale
	case err != nil:
		return 0, s.unavailable("write a delivery state", err)
	}
	return nrev, nil
}

// maxCASRetries bounds the compare-and-set loop of one change (writers
// race only between an attempt's outcome, acks and redelivers).
const maxCASRetries = 50

// applyChange applies change to the event's state by compare-and-set and
// keeps the retry schedule in step: when the new state has a next
// attempt, its schedule message is published before the state is written
// (a crash between the two leaves a schedule the state does not match,
// which fires and ends; never a pending state without a schedule).
// leaseDue is the due time of the lease being recorded (0: none): its
// message is acked after the change, so a new state due at that same time
// needs its schedule again. A state whose next attempt did not change
// (a stale outcome after a redeliver) already has its schedule.
func (s *Store) applyChange(accountID, evtID, inboxID, typ string, change store.Change, leaseDue int64) (old, nw store.EventState, err error) {
	for range maxCASRetries {
		v, rev, err := s.loadState(evtID, inboxID, typ)
		if err != nil {
			return store.EventState{}, store.EventState{}, err
		}
		nst, att := change(v.st, time.Now().UnixMilli())
		nv := stateValue{st: nst, attempts: v.attempts}
		if att != nil {
			nv.attempts = append(append([]store.Attempt(nil), v.attempts...), *att)
		}
		if nst.NextAt != 0 && (nst.NextAt != v.st.NextAt || rev == 0 || nst.NextAt == leaseDue) {
			if err := s.schedule(accountID, evtID, nst.NextAt); err != nil {
				return store.EventState{}, store.EventState{}, err
			}
		}
		if _, err := s.casState(evtID, nv, rev); err != nil {
			if errors.Is(err, errStale) {
				continue
			}
			return store.EventState{}, store.EventState{}, err
		}
		return v.st, nst, nil
	}
	return store.EventState{}, store.EventState{}, fmt.Errorf("cannot change the state of %s: too many concurrent changes", evtID)
}
