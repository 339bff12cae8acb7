package engine_test

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// BenchmarkHTTPInbound is issue 2's figure: durable inbound messages per
// second over real HTTP on loopback, 64 concurrent keep-alive clients,
// each 202 sent only after the message and its event were fsynced. The
// client runs in the same process and on the same 2 cores.
func BenchmarkHTTPInbound(b *testing.B) {
	s := testserver.Start(b)
	acc := s.NewAccount("bench")
	inboxes := make([]string, 16)
	for i := range inboxes {
		inboxes[i] = s.NewInbox(acc.Key, testserver.Sprintf("box%02d", i))
	}
	body := []byte(`{"from":"Customer <customer@example.com>","subject":"Re: your order","text":"Thanks for following up, the parcel arrived today."}`)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var n atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1))
		for pb.Next() {
			req, _ := http.NewRequest("POST", s.URL+"/v1/inboxes/"+inboxes[i%len(inboxes)]+"/inbound", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+acc.Key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
