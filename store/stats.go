package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Read-only summaries for the operator view (GET /admin/v1/stats and
// /admin/v1/events). They scan whole key ranges, so they are for
// operators, never for a hot path: CountDue reads one key per pending
// event, ListAllEvents one state record per stored event.

// DueCounts summarises the due index at one moment.
type DueCounts struct {
	// Scheduled is the number of entries: events with a next attempt.
	Scheduled int
	// Due is the number of entries whose time is at or before the due
	// bound given to CountDue (now: attempts running or about to run).
	Due int
	// Overdue is the number of entries whose time is at or before the
	// overdue bound (a while ago: attempts the server is behind on).
	Overdue int
	// OldestMs is the time (Unix ms) of the earliest entry; 0 when none.
	OldestMs int64
}

// CountDue counts the due index: every entry, those due at or before dueMs
// and those due at or before overdueMs (Unix ms; overdueMs <= dueMs). The
// index sorts by time, so both are prefixes of it.
func (d *DB) CountDue(dueMs, overdueMs int64) (DueCounts, error) {
	var c DueCounts
	err := d.scan([]byte(pDue), false, func(k, _ []byte) bool {
		at, _, ok := parseDueKey(k)
		if !ok {
			return true
		}
		if c.Scheduled == 0 {
			c.OldestMs = at
		}
		c.Scheduled++
		if at <= dueMs {
			c.Due++
		}
		if at <= overdueMs {
			c.Overdue++
		}
		return true
	})
	if err != nil {
		return DueCounts{}, fmt.Errorf("cannot count due entries: %w", err)
	}
	return c, nil
}

// AccountEvent is an event's id and account with its delivery state.
type AccountEvent struct {
	ID        string
	AccountID string
	State     EventState
}

// ListAllEvents returns a page of the events of every account (only
// accountID's when it is not ""), newest first across accounts, that match
// f, and the number that match. It examines every state record in range
// and keeps at most p.Offset+p.Limit of them in memory.
func (d *DB) ListAllEvents(accountID string, f EventFilter, p Page) ([]AccountEvent, int, error) {
	pfx := []byte(pEventState)
	if accountID != "" {
		pfx = prefixKey(pEventState + accountID)
	}
	keep := p.Offset + p.Limit
	var top []AccountEvent
	newestFirst := func(a, b AccountEvent) int { return strings.Compare(b.ID, a.ID) }
	total := 0
	var decErr error
	err := d.scan(pfx, false, func(k, v []byte) bool {
		acc, evt, ok := splitStateKey(k)
		if !ok {
			return true
		}
		st, err := decodeState(v)
		if err != nil {
			decErr = fmt.Errorf("event %s: %w", evt, err)
			return false
		}
		if (f.InboxID != "" && st.InboxID != f.InboxID) || (f.Status != "" && st.Status != f.Status) {
			return true
		}
		total++
		if keep == 0 {
			return true
		}
		top = append(top, AccountEvent{ID: string(evt), AccountID: string(acc), State: st})
		if len(top) >= 2*keep+64 {
			// Keys sort by account first: cut back to the newest keep
			// seen so far (amortised: one sort per keep+64 matches).
			slices.SortFunc(top, newestFirst)
			top = top[:keep]
		}
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list events: %w", err)
	}
	slices.SortFunc(top, newestFirst)
	if p.Offset >= len(top) {
		return nil, total, nil
	}
	return top[p.Offset:min(len(top), keep)], total, nil
}

// splitStateKey parses "es/<account>/<event>".
func splitStateKey(k []byte) (account, event []byte, ok bool) {
	rest, found := bytes.CutPrefix(k, []byte(pEventState))
	if !found {
		return nil, nil, false
	}
	account, event, ok = bytes.Cut(rest, []byte{'/'})
	return account, event, ok && len(account) > 0 && len(event) > 0
}
