package engine_test

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// TestWSReplayRandomHistories: for a random history over two inboxes,
// every last_event_id (and filter) replays exactly the stored suffix that
// matches, oldest first, up to the limit.
func TestWSReplayRandomHistories(t *testing.T) {
	const limit = 7
	s := testserver.Start(t, func(c *app.Config) { c.WS.ReplayLimit = limit })
	acc := s.NewAccount("a")
	ins := []string{s.NewInbox(acc.Key, "one"), s.NewInbox(acc.Key, "two")}
	rng := rand.New(rand.NewPCG(1, 2))
	type ev struct{ id, inbox string }
	var hist []ev
	for i := 0; i < 25; i++ {
		in := ins[rng.IntN(len(ins))]
		hist = append(hist, ev{s.Inbound(acc.Key, in, testserver.Sprintf("m%d", i)), in})
	}
	for trial := 0; trial < 30; trial++ {
		from := rng.IntN(len(hist))
		var filter []string
		if rng.IntN(2) == 0 {
			filter = []string{ins[rng.IntN(len(ins))]}
		}
		var want []string
		for _, e := range hist[from+1:] {
			if filter == nil || e.inbox == filter[0] {
				want = append(want, e.id)
			}
		}
		if len(want) > limit {
			want = want[:limit]
		}
		c := dialWS(t, s, acc.Key)
		m := map[string]any{"type": "subscribe", "last_event_id": hist[from].id}
		if filter != nil {
			m["inbox_ids"] = filter
		}
		c.send(m)
		c.expect("subscribed")
		var got []string
		for range want {
			got = append(got, c.expectEvent())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d from %d filter %v:\n got %v\nwant %v", trial, from, filter, got, want)
		}
		// Nothing more was replayed: the next frame is the pong.
		c.pingPong()
		_ = c.conn.Close()
	}
}

func TestWSReplayErrorsStillSubscribe(t *testing.T) {
	s := testserver.Start(t)
	a, b := s.NewAccount("a"), s.NewAccount("b")
	ina := s.NewInbox(a.Key, "alpha")
	inb := s.NewInbox(b.Key, "bravo")
	foreign := s.Inbound(b.Key, inb, "b's")
	for _, tc := range []struct{ last, want string }{
		{"evt_01M8C9RB9X5V865CKTKNCS7WF4", "unknown last_event_id"},
		{foreign, "unknown last_event_id"},
		{"evt_nope", "malformed last_event_id"},
	} {
		c := dialWS(t, s, a.Key)
		c.send(map[string]any{"type": "subscribe", "last_event_id": tc.last})
		c.expect("subscribed")
		c.expectError(tc.want)
		// The subscription applies: live events arrive.
		e := s.Inbound(a.Key, ina, "live")
		if got := c.expectEvent(); got != e {
			t.Fatalf("got %s want %s", got, e)
		}
		_ = c.conn.Close()
	}
}

// TestWSReplayDuringLiveIngest: events are stored continuously while a
// connection subscribes with last_event_id; every event after that id
// arrives exactly once and in storage order (RELIABILITY.md invariant 4).
func TestWSReplayDuringLiveIngest(t *testing.T) {
	if testserver.OnNATSEnv() {
		t.Skip("ids sort by storage order only on one node (a cluster's order is its log's); see internal/cluster tests")
	}
	s := testserver.Start(t, func(c *app.Config) { c.WS.ReplayLimit = 10000 })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	first := s.Inbound(acc.Key, in, "first")

	for round := 0; round < 5; round++ {
		var (
			mu     sync.Mutex
			stored []string
			wg     sync.WaitGroup
			stop   = make(chan struct{})
		)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := s.Inbound(acc.Key, in, "live")
					mu.Lock()
					stored = append(stored, id)
					mu.Unlock()
				}
			}()
		}
		// Let some history build up, then subscribe mid-stream.
		testserver.WaitFor(t, 10e9, "history", func() bool { mu.Lock(); defer mu.Unlock(); return len(stored) >= 20 })
		c := dialWS(t, s, acc.Key)
		c.send(map[string]any{"type": "subscribe", "last_event_id": first})
		c.expect("subscribed")
		testserver.WaitFor(t, 10e9, "more events", func() bool { mu.Lock(); defer mu.Unlock(); return len(stored) >= 60 })
		close(stop)
		wg.Wait()

		// Every event stored after `first` (ids sort by time) arrives
		// exactly once, and nothing else does.
		want := map[string]bool{}
		mu.Lock()
		for _, id := range stored {
			if id > first {
				want[id] = true
			}
		}
		last := slices.Max(stored)
		mu.Unlock()
		got := map[string]bool{}
		for len(got) < len(want) {
			id := c.expectEvent()
			if got[id] {
				t.Fatalf("round %d: %s arrived twice", round, id)
			}
			if !want[id] {
				t.Fatalf("round %d: %s is not after %s", round, id, first)
			}
			got[id] = true
		}
		c.pingPong() // and nothing else is pending
		_ = c.conn.Close()
		first = last
	}
}
