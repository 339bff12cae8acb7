package engine_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// statsAnswer is the part of GET /admin/v1/stats the tests read.
type statsAnswer struct {
	At          string
	Accounts    int
	Connections struct{ Open, Registered, Subscribed int }
	Counters    struct {
		EventsStored, EventsFailed int
		Attempts                   map[string]struct{ OK, Failed int }
	}
	Rates *struct {
		WindowSeconds, EventsStored, EventsFailed, Deliveries, FailedAttempts float64
	}
	Queues struct {
		Dispatch, Webhook, Writer struct{ Depth, Capacity int }
	}
	Due struct {
		Scheduled, Due, Overdue int
		OverdueAfterMs          int64
		OldestAt                *string
	}
	PerAccount []struct {
		AccountID, Name         string
		Connections, Subscribed int
	}
}

func stats(t *testing.T, s *testserver.Server) statsAnswer {
	t.Helper()
	var st statsAnswer
	mustGet(t, s, "/admin/v1/stats", testserver.AdminToken, &st)
	return st
}

func TestAdminStats(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a, b := s.NewAccount("alpha"), s.NewAccount("beta")
	inA := s.NewInbox(a.Key, "alpha")

	checkErr(t, s, "GET", "/admin/v1/stats", "", nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "GET", "/admin/v1/stats", a.Key, nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "GET", "/admin/v1/stats?window=1ms", testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/admin/v1/stats?window=soon", testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")

	st := stats(t, s)
	if st.Accounts != 2 || st.Connections.Registered != 0 || len(st.PerAccount) != 0 || st.Rates != nil {
		t.Fatalf("fresh server: %+v", st)
	}
	if st.Queues.Dispatch.Capacity == 0 || st.Queues.Webhook.Capacity == 0 || st.Queues.Writer.Capacity == 0 || st.Due.OverdueAfterMs != 30_000 {
		t.Fatalf("queue bounds: %+v, due %+v", st.Queues, st.Due)
	}

	// Connections per account: two of alpha's (one subscribed), one of
	// beta's.
	c1 := dialWS(t, s, a.Key)
	c1.subscribe(nil, nil)
	dialWS(t, s, a.Key).pingPong()
	dialWS(t, s, b.Key).pingPong()
	testserver.WaitFor(t, 5*time.Second, "three registered connections", func() bool { return stats(t, s).Connections.Registered == 3 })
	st = stats(t, s)
	if st.Connections.Subscribed != 1 || st.Connections.Open != 3 || len(st.PerAccount) != 2 {
		t.Fatalf("connections %+v, per account %+v", st.Connections, st.PerAccount)
	}
	if p := st.PerAccount[0]; p.AccountID != a.ID || p.Name != "alpha" || p.Connections != 2 || p.Subscribed != 1 {
		t.Fatalf("first account %+v", p)
	}
	if p := st.PerAccount[1]; p.AccountID != b.ID || p.Connections != 1 || p.Subscribed != 0 {
		t.Fatalf("second account %+v", p)
	}

	// Counters and rates move with traffic: the events go to alpha's
	// subscriber (WebSocket successes).
	before := st.Counters.EventsStored
	for i := 0; i < 3; i++ {
		s.Inbound(a.Key, inA, testserver.Sprintf("m%d", i))
		c1.expectEvent()
	}
	testserver.WaitFor(t, 5*time.Second, "the counters and a rate", func() bool {
		st = stats(t, s)
		return st.Counters.EventsStored == before+3 && st.Counters.Attempts["websocket"].OK == 3 && st.Rates != nil && st.Rates.EventsStored > 0
	})
	if r := st.Rates; r.WindowSeconds <= 0 || r.WindowSeconds > 60 || r.Deliveries <= 0 || r.FailedAttempts != 0 {
		t.Fatalf("rates %+v", *r)
	}
}

func TestAdminStatsDueIndex(t *testing.T) {
	t.Parallel()
	// A first attempt an hour away: the events wait in the due index.
	s := testserver.Start(t, func(c *app.Config) { c.Delivery.Schedule = []time.Duration{time.Hour} })
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	for i := 0; i < 4; i++ {
		s.Inbound(a.Key, in, testserver.Sprintf("later %d", i))
	}
	st := stats(t, s)
	if st.Due.Scheduled != 4 || st.Due.Due != 0 || st.Due.Overdue != 0 || st.Due.OldestAt == nil {
		t.Fatalf("due %+v", st.Due)
	}
	at, err := time.Parse(time.RFC3339, *st.Due.OldestAt)
	if err != nil || time.Until(at) < 59*time.Minute {
		t.Fatalf("oldest due entry at %v (%v)", at, err)
	}
}

// adminEvent is an item of GET /admin/v1/events.
type adminEvent struct {
	ID, AccountID, InboxID, Type, Status, OccurredAt string
	Attempts                                         int
	LastAttemptAt, NextAttemptAt, LastError          *string
}

func TestAdminEventsAcrossAccounts(t *testing.T) {
	t.Parallel()
	// One attempt: with no listener and no webhook an event fails at once.
	s := testserver.Start(t, func(c *app.Config) { c.Delivery.Schedule = []time.Duration{0} })
	a, b := s.NewAccount("a"), s.NewAccount("b")
	inA, inB := s.NewInbox(a.Key, "aaa"), s.NewInbox(b.Key, "bbb")
	var failed []string // newest first
	for i := 0; i < 6; i++ {
		key, in := a.Key, inA
		if i%2 == 1 {
			key, in = b.Key, inB
		}
		evt := s.Inbound(key, in, testserver.Sprintf("m%d", i))
		testserver.WaitFor(t, 5*time.Second, "event fails", func() bool { return s.EventStatus(key, evt) == "failed" })
		failed = append([]string{evt}, failed...)
	}
	// One delivered event of a's, which the failed listing leaves out.
	c := dialWS(t, s, a.Key)
	c.subscribe(nil, nil)
	delivered := s.Inbound(a.Key, inA, "heard")
	c.expectEvent()
	testserver.WaitFor(t, 5*time.Second, "event delivered", func() bool { return s.EventStatus(a.Key, delivered) == "delivered" })

	var page listOf[adminEvent]
	mustGet(t, s, "/admin/v1/events?status=failed&limit=4", testserver.AdminToken, &page)
	if page.Total != 6 || len(page.Data) != 4 {
		t.Fatalf("page: total %d, %d items", page.Total, len(page.Data))
	}
	for i, e := range page.Data {
		if e.ID != failed[i] || e.Status != "failed" || e.Attempts != 1 || e.LastAttemptAt == nil || e.NextAttemptAt != nil ||
			e.LastError == nil || !strings.Contains(*e.LastError, "no WebSocket subscribed") || e.Type != "message.received" {
			t.Fatalf("item %d: %+v (want %s)", i, e, failed[i])
		}
	}
	if page.Data[0].AccountID != b.ID || page.Data[1].AccountID != a.ID || page.Data[0].InboxID != inB {
		t.Fatalf("accounts of the newest: %s, %s", page.Data[0].AccountID, page.Data[1].AccountID)
	}
	mustGet(t, s, "/admin/v1/events?status=failed&limit=4&offset=4", testserver.AdminToken, &page)
	if len(page.Data) != 2 || page.Data[0].ID != failed[4] || page.Data[1].ID != failed[5] {
		t.Fatalf("second page: %+v", page.Data)
	}
	mustGet(t, s, "/admin/v1/events?accountId="+a.ID, testserver.AdminToken, &page)
	if page.Total != 4 || page.Data[0].ID != delivered || page.Data[0].LastError != nil || page.Data[0].Status != "delivered" {
		t.Fatalf("account a: total %d, first %+v", page.Total, page.Data[0])
	}

	checkErr(t, s, "GET", "/admin/v1/events", a.Key, nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "GET", "/admin/v1/events?status=lost", testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/admin/v1/events?accountId=nope", testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/admin/v1/events?offset=10001", testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")
}
