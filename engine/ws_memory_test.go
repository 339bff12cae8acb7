package engine_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// Issue 14: what slow consumers cost stays at --ws-max-pending per
// connection, measured on the Go heap with real sockets. N connections
// subscribe and never read (4 KiB receive buffers); events of ~210 KiB
// are posted one at a time until every connection is closed as a slow
// consumer (1008). After each event's push the test reads the heap in use
// (garbage included), then the live heap after a collection. Growth is
// measured from the live heap once the sockets are gone: the same events
// are stored then, and what earlier tests of the process left behind
// (nbio's global buffer pool keeps their large request bodies in use, and
// under -race it drops and keeps them at random) is there or gone at both
// ends alike.
//
// Here every connection gets every event: the connections share one copy
// of each frame, so their backlogs, each up to the cap, cost a few frames
// in all. It was one nbio copy of every unsent frame per connection (live
// heap 0.96–1.00 × the cap each, in use 1.20–1.29 × here and 1.6–2.0 × in the
// issue's measurement).
func TestWSSlowConsumersShareFramesOnTheHeap(t *testing.T) {
	h := slowConsumersHeap(t, 40, 1<<20, false)
	live, inuse := h.perConn(h.live, h.end), h.perConn(h.inuse, h.end)
	if live > 0.25 {
		t.Errorf("live heap %.2f × --ws-max-pending per slow connection: the backlogs do not share their frames", live)
	}
	if inuse > 1.25 {
		t.Errorf("heap in use %.2f × --ws-max-pending per slow connection, want ≤ 1.25", inuse)
	}
}

// The worst case for memory: every connection has its own inbox, so no
// frame is shared and each backlog is its own. What a connection holds is
// still bounded by the cap: the whole frames not yet completely written
// count, not only their unsent bytes. The cap is 4 MiB (~300 events), so
// that what the ingestion holds at a given moment weighs little beside 8
// backlogs. Measured: 1.28–1.30 × the cap live before the frames were
// shared and counted whole, 1.08–1.10 × after. The heap in use, one event's
// ingestion garbage included, is only logged.
func TestWSSlowConsumerHeapStopsAtTheCap(t *testing.T) {
	if raceEnabled {
		t.Skip("~300 posts of 210 KiB: over 5 minutes under -race (the write path runs under it in the shared test)")
	}
	h := slowConsumersHeap(t, 8, 4<<20, true)
	live := h.perConn(h.live, h.end)
	if live > 1.25 {
		t.Errorf("live heap %.2f × --ws-max-pending per slow connection, want ≤ 1.25", live)
	}
}

// heapRun is what slowConsumersHeap measured, in bytes: the live heap of
// the idle server with its connections open (base), the peaks of the
// live heap and of the heap in use during the load, the live heap once
// the sockets were gone (end, the reference); n connections at a cap of
// maxPending.
type heapRun struct {
	base, live, inuse, end uint64
	n, maxPending          int
}

// perConn is the growth from ref to peak per connection, in units of the cap.
func (h heapRun) perConn(peak, ref uint64) float64 {
	return float64(int64(peak)-int64(ref)) / float64(h.n) / float64(h.maxPending)
}

// slowConsumersHeap runs the load described above on n connections (each
// with its own inbox when distinct) and returns what it measured. It
// checks that every connection was closed as a slow consumer.
func slowConsumersHeap(t *testing.T, n, maxPending int, distinct bool) heapRun {
	t.Helper()
	if testing.Short() {
		t.Skip("posts events of 210 KiB until every connection is closed as a slow consumer")
	}
	s := testserver.Start(t, func(c *app.Config) {
		c.WS.MaxPending = maxPending
		c.WS.MaxConnsPerAccount = n
		// The clients never read, so they never answer a ping: no
		// heartbeat close (1001) may come before the slow-consumer one.
		c.WS.PingInterval = time.Hour
	})
	acc := s.NewAccount("a")
	inboxes := []string{s.NewInbox(acc.Key, "agent")}
	sub := []byte(`{"type":"subscribe"}`)
	for i := range n {
		if distinct {
			if i > 0 {
				inboxes = append(inboxes, s.NewInbox(acc.Key, fmt.Sprint("agent-", i)))
			}
			sub = fmt.Appendf(nil, `{"type":"subscribe","inbox_ids":[%q]}`, inboxes[i])
		}
		raw := rawUpgrade(t, s, acc.Key, func(c *net.TCPConn) { _ = c.SetReadBuffer(4096) })
		writeClientFrame(t, raw, 0x1, sub)
		expectRawText(t, raw, "subscribed") // the last frame read
	}
	allSlow := fmt.Appendf(nil, "mailwire_ws_slow_consumers_total %d\n", n)
	line := "a long line of text, about seventy bytes, to make a big event body.\n"
	body := strings.Repeat(line, 210<<10/len(line))
	liveBase, _ := heapNow()
	var peakLive, peakInuse uint64
	events := 0
	for ; events < 100*len(inboxes); events++ {
		var out struct{ EventID string }
		s.MustJSON("POST", "/v1/inboxes/"+inboxes[events%len(inboxes)]+"/inbound", acc.Key,
			map[string]string{"from": "a@b.c", "subject": fmt.Sprint(events), "text": body}, http.StatusAccepted, &out)
		attempted(t, s, acc.Key, out.EventID)
		l, u := heapNow()
		peakLive, peakInuse = max(peakLive, l), max(peakInuse, u)
		if _, m, _ := s.Do("GET", "/metrics", "", nil); bytes.Contains(m, allSlow) {
			break
		}
	}
	if _, m, _ := s.Do("GET", "/metrics", "", nil); !bytes.Contains(m, allSlow) {
		t.Fatalf("after %d events not every connection was closed as a slow consumer", events)
	}
	testserver.WaitFor(t, 10*time.Second, "the sockets to close", func() bool {
		_, m, _ := s.Do("GET", "/metrics", "", nil)
		return bytes.Contains(m, []byte("mailwire_ws_connections 0\n"))
	})
	runtime.GC() // a sync.Pool keeps what it holds through one collection
	h := heapRun{base: liveBase, live: peakLive, inuse: peakInuse, n: n, maxPending: maxPending}
	h.end, _ = heapNow()
	mib := func(b uint64) float64 { return float64(int64(b)-int64(h.end)) / (1 << 20) }
	t.Logf("%d connections, %d events, over the live heap once the sockets were gone (%+.1f MiB from the start): "+
		"peak live heap %+.1f MiB (%.2f × the cap per connection), peak heap in use %+.1f MiB (%.2f ×)",
		n, events+1, float64(int64(h.end)-int64(liveBase))/(1<<20), mib(peakLive), h.perConn(peakLive, h.end), mib(peakInuse), h.perConn(peakInuse, h.end))
	return h
}

// heapNow returns the live heap after a collection and the heap in use
// just before it.
func heapNow() (live, inuse uint64) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	inuse = ms.HeapInuse
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, inuse
}
