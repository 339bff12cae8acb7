package ws

import (
	"cmp"
	"slices"
)

// Stats is a snapshot of the hub for the operator view (GET
// /admin/v1/stats).
type Stats struct {
	// Open counts upgraded connections whose socket is not closed yet
	// (including those still authenticating or closing).
	Open int64
	// Connections counts registered (authenticated, not closing)
	// connections; Subscribed those of them with a non-empty
	// subscription.
	Connections, Subscribed int
	// Accounts lists, per account with a registered connection, its
	// counts: most connections first, then by account id.
	Accounts []AccountStats
}

// AccountStats are one account's live connections.
type AccountStats struct {
	AccountID   string
	Connections int
	// Subscribed counts the connections with a non-empty subscription
	// (one that matches some inbox and type).
	Subscribed int
}

// Stats walks every registered connection once and counts them per
// account. It holds each registry shard's lock only while copying that
// shard's connections, so pushes and registrations are not held up.
func (h *Hub) Stats() Stats {
	per := make(map[string]*AccountStats)
	st := Stats{Open: h.open.Load()}
	h.each(func(c *conn) {
		a := per[c.accountID]
		if a == nil {
			a = &AccountStats{AccountID: c.accountID}
			per[c.accountID] = a
		}
		a.Connections++
		st.Connections++
		if !h.idx.Get(c.accountID, c).IsZero() {
			a.Subscribed++
			st.Subscribed++
		}
	})
	st.Accounts = make([]AccountStats, 0, len(per))
	for _, a := range per {
		st.Accounts = append(st.Accounts, *a)
	}
	slices.SortFunc(st.Accounts, func(a, b AccountStats) int {
		return cmp.Or(cmp.Compare(b.Connections, a.Connections), cmp.Compare(a.AccountID, b.AccountID))
	})
	return st
}
