package cluster_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkClusterIngest posts JSON inbound messages from 32 concurrent
// senders to one node of a 2-node cluster on 3 NATS servers (R3,
// sync_interval always), each acknowledged only once JetStream has it.
func BenchmarkClusterIngest(b *testing.B) {
	c := startClusterB(b, 2)
	a := c.nodes[0]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n.Add(1) <= int64(b.N) {
				st, body, _ := a.Do("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]string{"from": "x@example.com", "subject": "bench", "text": "t"})
				if st != http.StatusAccepted {
					b.Errorf("%d %s", st, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if testing.Verbose() {
		_, m, _ := a.Do("GET", "/metrics", "", nil)
		for _, l := range strings.Split(string(m), "\n") {
			if strings.HasPrefix(l, "mailwire_nats_publish_seconds") || strings.HasPrefix(l, "mailwire_http_request_duration") {
				b.Log(l)
			}
		}
	}
}

// BenchmarkClusterCrossNode sends one inbound message at a time to node A
// and waits for its frame on a socket subscribed on node B: it reports
// the time from sending the request to its 202 (the R3 PubAck) and to the
// frame on the other node, p50 and p99.
func BenchmarkClusterCrossNode(b *testing.B) {
	c := startClusterB(b, 2)
	a, other := c.nodes[0], c.nodes[1]
	acc := a.NewAccount("acme")
	inbox := a.NewInbox(acc.Key, "agent")
	ws, _, err := websocket.DefaultDialer.Dial(other.WSURL, http.Header{"Authorization": {"Bearer " + acc.Key}})
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"type": "subscribe"}); err != nil {
		b.Fatal(err)
	}
	var f map[string]any
	if err := ws.ReadJSON(&f); err != nil || f["type"] != "subscribed" {
		b.Fatalf("subscribe: %v %v", f, err)
	}
	acked := make([]time.Duration, 0, b.N)
	framed := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		st, body, _ := a.Do("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]string{"from": "x@example.com", "subject": "bench", "text": "t"})
		if st != http.StatusAccepted {
			b.Fatalf("%d %s", st, body)
		}
		acked = append(acked, time.Since(t0))
		for {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			var f map[string]any
			if err := ws.ReadJSON(&f); err != nil {
				b.Fatal(err)
			}
			if f["event_id"] != nil {
				break
			}
		}
		framed = append(framed, time.Since(t0))
	}
	b.StopTimer()
	q := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[int(float64(len(s)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(q(acked, 0.5), "ms-202-p50")
	b.ReportMetric(q(acked, 0.99), "ms-202-p99")
	b.ReportMetric(q(framed, 0.5), "ms-frame-p50")
	b.ReportMetric(q(framed, 0.99), "ms-frame-p99")
}
