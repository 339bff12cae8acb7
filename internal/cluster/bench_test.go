package cluster_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
