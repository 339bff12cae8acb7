package ingest_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/testserver"
	"github.com/mailwire/mailwire/store"
)

// BenchmarkDurableIngest stores small JSON inbound messages from many
// concurrent callers, each acknowledged only after its synced commit (the
// real fsync of this machine's disk), with the real dispatcher consuming
// the events (no subscriber: attempts fail on channel "none" and are
// rescheduled, as in production with nobody listening).
func BenchmarkDurableIngest(b *testing.B) {
	benchIngest(b, func(db *store.DB) func() {
		disp := delivery.New(db, delivery.Config{Logger: testserver.Logger()})
		disp.Start()
		return func() { _ = disp.Shutdown(b.Context()) }
	})
}

// BenchmarkIngestStoreOnly is BenchmarkDurableIngest without delivery:
// the cost of building the message and the synced write alone.
func BenchmarkIngestStoreOnly(b *testing.B) {
	benchIngest(b, func(*store.DB) func() { return func() {} })
}

func benchIngest(b *testing.B, deliver func(*store.DB) (stop func())) {
	db, err := store.Open(store.Options{Dir: b.TempDir(), Logger: testserver.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	defer deliver(db)()
	svc := ingest.New(db, ingest.Config{MailDomain: "bench.test"})
	acc, _, _, err := db.CreateAccount("bench")
	if err != nil {
		b.Fatal(err)
	}
	inboxes := make([]store.Inbox, 64)
	for i := range inboxes {
		if inboxes[i], err = db.CreateInbox(store.Inbox{AccountID: acc.ID, MailboxName: testserver.Sprintf("box%02d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	msg := &ingest.JSONInbound{From: "Customer <customer@example.com>", Subject: "Re: your order", Text: "Thanks for following up, the parcel arrived today."}
	var n atomic.Int64
	b.SetParallelism(32) // 32 × GOMAXPROCS concurrent writers share fsyncs
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := int(n.Add(1))
		for pb.Next() {
			if _, _, err := svc.DeliverJSON(inboxes[i%len(inboxes)], msg, ""); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
