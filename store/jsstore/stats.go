package jsstore

import (
	"slices"
	"strings"

	"github.com/mailwire/mailwire/store"
)

// CountDue implements store.EventLog from this node's index (the states
// as the node last heard them).
func (s *Store) CountDue(dueMs, overdueMs int64) (store.DueCounts, error) {
	x := s.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	var c store.DueCounts
	for _, es := range x.byAcc {
		for _, e := range es {
			st := x.stateOfLocked(e)
			if st.Status != store.StatusPending || st.NextAt == 0 {
				continue
			}
			c.Scheduled++
			if c.OldestMs == 0 || st.NextAt < c.OldestMs {
				c.OldestMs = st.NextAt
			}
			if st.NextAt <= dueMs {
				c.Due++
			}
			if st.NextAt <= overdueMs {
				c.Overdue++
			}
		}
	}
	return c, nil
}

// ListAllEvents implements store.EventLog from this node's index.
func (s *Store) ListAllEvents(accountID string, f store.EventFilter, p store.Page) ([]store.AccountEvent, int, error) {
	x := s.idx
	x.mu.RLock()
	var all []store.AccountEvent
	for acc, es := range x.byAcc {
		if accountID != "" && acc != accountID {
			continue
		}
		for _, e := range es {
			if f.InboxID != "" && e.inbox != f.InboxID {
				continue
			}
			st := x.stateOfLocked(e)
			if f.Status != "" && st.Status != f.Status {
				continue
			}
			all = append(all, store.AccountEvent{ID: e.id, AccountID: e.acc, State: st})
		}
	}
	x.mu.RUnlock()
	slices.SortFunc(all, func(a, b store.AccountEvent) int { return strings.Compare(b.ID, a.ID) })
	return pageOf(all, p), len(all), nil
}

// DeliveryStats implements store.Deliveries.
func (s *Store) DeliveryStats() store.DeliveryStats {
	n := s.dl.leased.len()
	return store.DeliveryStats{InFlight: n, Backlog: len(s.dl.work), BacklogCap: cap(s.dl.work), Stored: s.m.stored.Get()}
}
