package delivery_test

import (
	"encoding/json"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/delivery/webhook"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/testserver"
	"github.com/mailwire/mailwire/store"
)

// BenchmarkWebhookDelivery measures webhook deliveries per second to a
// local fasthttp sink: b.N events are stored first (nobody to deliver to),
// then the dispatcher starts and delivers them all — scheduler scan, the
// webhook pool (64 workers), signing, the POST, and every attempt durably
// recorded by the writer. It reports deliveries/s and the p50/p99 of
// dispatch-to-receipt (the attempt's delivered_at to the sink's clock).
func BenchmarkWebhookDelivery(b *testing.B) {
	var (
		got   atomic.Int64
		done  = make(chan struct{})
		latMu sync.Mutex
		lats  []time.Duration
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sink := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		var p struct {
			DeliveredAt time.Time `json:"delivered_at"`
		}
		_ = json.Unmarshal(ctx.PostBody(), &p)
		latMu.Lock()
		lats = append(lats, time.Since(p.DeliveredAt))
		latMu.Unlock()
		if got.Add(1) == int64(b.N) {
			close(done)
		}
	}}
	go func() { _ = sink.Serve(ln) }()
	defer sink.Shutdown()

	db, err := store.Open(store.Options{Dir: b.TempDir(), Logger: testserver.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	disp := delivery.New(db, delivery.Config{
		Logger:  testserver.Logger(),
		Webhook: webhook.Config{AllowPrivate: true},
	})
	ing := ingest.New(db, ingest.Config{MailDomain: "bench.test"})
	acc, _, _, _ := db.CreateAccount("bench")
	in, _ := db.CreateInbox(store.Inbox{AccountID: acc.ID, MailboxName: "agent"})
	sec, _ := webhook.NewSecret()
	if _, err := db.UpdateWebhook(acc.ID, func(w *store.Webhook, _ bool) (bool, error) {
		w.URL, w.Secret = "http://"+ln.Addr().String()+"/hook", sec
		return false, nil
	}); err != nil {
		b.Fatal(err)
	}
	msg := &ingest.JSONInbound{From: "a@example.com", Subject: "order", Text: "Thanks for following up."}
	var wg sync.WaitGroup
	per := (b.N + 31) / 32
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w * per; i < min(b.N, (w+1)*per); i++ {
				if _, _, err := ing.DeliverJSON(in, msg, ""); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()

	b.ResetTimer()
	start := time.Now()
	disp.Start()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d delivered", got.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	_ = disp.Shutdown(b.Context())
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
}
