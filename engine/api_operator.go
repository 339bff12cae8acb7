package engine

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// The operator view's JSON (the console's /console#operator page, or any
// monitoring script): GET /admin/v1/stats and GET /admin/v1/events, both
// behind the admin token. They are extensions of the API (docs/API.md).

const (
	// overdueGrace: a due entry counts as overdue once its time is this
	// far behind. An attempt keeps its entry until its outcome is
	// recorded, so a webhook attempt in flight (up to --webhook-timeout,
	// 15 s by default) is not overdue yet.
	overdueGrace = 30 * time.Second
	// maxStatsAccounts bounds the per-account list of the stats answer
	// (the accounts with the most connections).
	maxStatsAccounts = 100
	// maxAdminEventsOffset bounds ?offset of /admin/v1/events: the listing
	// keeps offset+limit events in memory while it scans.
	maxAdminEventsOffset = 10_000
)

// statsView is the answer of GET /admin/v1/stats.
type statsView struct {
	At string `json:"at"`
	// WindowSeconds is the rate window asked for (rates.windowSeconds is
	// the one used).
	WindowSeconds float64         `json:"windowSeconds"`
	Accounts      int             `json:"accounts"`
	Connections   connectionsView `json:"connections"`
	// Counters count since the process started.
	Counters countersView `json:"counters"`
	// Rates is null until there are two readings a moment apart.
	Rates      *rates         `json:"rates"`
	Queues     queuesView     `json:"queues"`
	Due        dueView        `json:"due"`
	PerAccount []accountConns `json:"perAccount"`
	// PerAccountTruncated: more accounts have connections than listed.
	PerAccountTruncated bool `json:"perAccountTruncated"`
}

type connectionsView struct {
	// Open counts upgraded sockets not yet closed; Registered the
	// authenticated ones; Subscribed those with a subscription.
	Open       int64 `json:"open"`
	Registered int   `json:"registered"`
	Subscribed int   `json:"subscribed"`
}

type okBad struct {
	OK     uint64 `json:"ok"`
	Failed uint64 `json:"failed"`
}

type countersView struct {
	EventsStored  uint64           `json:"eventsStored"`
	EventsFailed  uint64           `json:"eventsFailed"`
	EventsExpired uint64           `json:"eventsExpired"`
	Deferred      uint64           `json:"deferred"`
	Attempts      map[string]okBad `json:"attempts"`
}

type depthView struct {
	Depth    int `json:"depth"`
	Capacity int `json:"capacity"`
}

type queuesView struct {
	Dispatch depthView `json:"dispatch"`
	Webhook  depthView `json:"webhook"`
	Writer   depthView `json:"writer"`
	InFlight int       `json:"inFlight"`
}

type dueView struct {
	Scheduled      int     `json:"scheduled"`
	Due            int     `json:"due"`
	Overdue        int     `json:"overdue"`
	OverdueAfterMs int64   `json:"overdueAfterMs"`
	OldestAt       *string `json:"oldestAt"`
}

type accountConns struct {
	AccountID   string `json:"accountId"`
	Name        string `json:"name"`
	Connections int    `json:"connections"`
	Subscribed  int    `json:"subscribed"`
}

// adminStats is GET /admin/v1/stats[?window=60s].
func (s *Server) adminStats(w http.ResponseWriter, r *req) error {
	window := rateWindowDefault
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < rateWindowMin || d > rateWindowMax {
			return errf(http.StatusBadRequest, codeBadRequest, fmt.Sprintf("window must be a duration from %s to %s, not %s", rateWindowMin, rateWindowMax, quoteShort(v)))
		}
		window = d
	}
	now := time.Now()
	ds := s.deps.Delivery.Stats()
	cur := readCounters(ds)
	out := statsView{At: apiTime(now), WindowSeconds: window.Seconds()}
	if base, ok := s.ops.observe(now, cur, window); ok {
		out.Rates = computeRates(base, cur, now)
	}
	out.Counters = countersView{EventsStored: ds.EventsStored, EventsFailed: ds.EventsFailed,
		EventsExpired: ds.EventsExpired, Deferred: ds.Deferred, Attempts: make(map[string]okBad, len(ds.Attempts))}
	for ch, a := range ds.Attempts {
		out.Counters.Attempts[ch] = okBad{a.OK, a.Failed}
	}
	out.Queues = queuesView{
		Dispatch: depthView{ds.Queued, ds.QueueCapacity},
		Webhook:  depthView{ds.WebhookQueued, ds.WebhookCapacity},
		Writer:   depthView{ds.WriterBacklog, ds.WriterCapacity},
		InFlight: ds.InFlight,
	}
	due, err := s.deps.DB.CountDue(now.UnixMilli(), now.Add(-overdueGrace).UnixMilli())
	if err != nil {
		return err
	}
	out.Due = dueView{Scheduled: due.Scheduled, Due: due.Due, Overdue: due.Overdue,
		OverdueAfterMs: overdueGrace.Milliseconds(), OldestAt: msTime(due.OldestMs)}
	if out.Accounts, err = s.deps.DB.CountAccounts(); err != nil {
		return err
	}
	hs := s.hub.Stats()
	out.Connections = connectionsView{Open: hs.Open, Registered: hs.Connections, Subscribed: hs.Subscribed}
	accs := hs.Accounts
	if len(accs) > maxStatsAccounts {
		accs, out.PerAccountTruncated = accs[:maxStatsAccounts], true
	}
	out.PerAccount = make([]accountConns, 0, len(accs))
	for _, a := range accs {
		v := accountConns{AccountID: a.AccountID, Connections: a.Connections, Subscribed: a.Subscribed}
		acc, err := s.deps.DB.GetAccount(a.AccountID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		v.Name = acc.Name
		out.PerAccount = append(out.PerAccount, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

// adminEventView is an event in the cross-account listing.
type adminEventView struct {
	ID            string  `json:"id"`
	AccountID     string  `json:"accountId"`
	InboxID       string  `json:"inboxId"`
	Type          string  `json:"type"`
	Status        string  `json:"status"`
	DeliveredVia  *string `json:"deliveredVia"`
	Attempts      int     `json:"attempts"`
	LastAttemptAt *string `json:"lastAttemptAt"`
	NextAttemptAt *string `json:"nextAttemptAt"`
	OccurredAt    string  `json:"occurredAt"`
	// LastError is the error of the last attempt when it failed.
	LastError *string `json:"lastError"`
}

// adminEvents is GET /admin/v1/events?status=&accountId=&limit=&offset=:
// events of every account, newest first.
func (s *Server) adminEvents(w http.ResponseWriter, r *req) error {
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	if offset > maxAdminEventsOffset {
		return errf(http.StatusBadRequest, codeBadRequest, fmt.Sprintf("offset must be at most %d here (filter by accountId or status instead)", maxAdminEventsOffset))
	}
	q := r.URL.Query()
	acc, f := q.Get("accountId"), store.EventFilter{Status: q.Get("status")}
	if acc != "" && !ids.Valid(ids.Account, acc) {
		return errf(http.StatusBadRequest, codeBadRequest, "malformed accountId "+quoteShort(acc))
	}
	switch f.Status {
	case "", store.StatusPending, store.StatusDelivered, store.StatusFailed:
	default:
		return errf(http.StatusBadRequest, codeBadRequest, "status must be pending, delivered or failed, not "+quoteShort(f.Status))
	}
	evs, total, err := s.deps.DB.ListAllEvents(acc, f, store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	out := list[adminEventView]{Data: make([]adminEventView, 0, len(evs)), Total: total}
	for _, e := range evs {
		t, _ := ids.Time(ids.Event, e.ID)
		v := adminEventView{
			ID: e.ID, AccountID: e.AccountID, InboxID: e.State.InboxID, Type: e.State.Type,
			Status: e.State.Status, DeliveredVia: strPtr(deliveredVia(e.State)), Attempts: e.State.Attempts,
			LastAttemptAt: msTime(e.State.LastAt), NextAttemptAt: msTime(e.State.NextAt), OccurredAt: apiTime(t),
		}
		if e.State.Status != store.StatusDelivered && e.State.Attempts > 0 {
			atts, err := s.deps.DB.ListAttempts(e.ID)
			if err != nil {
				return err
			}
			if n := len(atts); n > 0 && !atts[n-1].OK {
				v.LastError = strPtr(atts[n-1].Error)
			}
		}
		out.Data = append(out.Data, v)
	}
	return writeJSON(w, http.StatusOK, out)
}
