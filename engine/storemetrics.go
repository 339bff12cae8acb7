package engine

import (
	"io"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
	"github.com/mailwire/mailwire/store"
)

func metricsWriteProcess(w io.Writer) { metrics.WriteProcessMetrics(w) }

func init() {
	promtext.Describe("mailwire_delivery_due_scheduled", "Events with a next delivery attempt in the due index.")
	promtext.Describe("mailwire_delivery_overdue", "Scheduled attempts more than 30 s past their time: the server is behind on delivery.")
	promtext.Describe("mailwire_delivery_oldest_due_timestamp_seconds", "Unix time of the earliest scheduled attempt (0 when none).")
}

// dueReadEvery bounds how often a scrape counts the due index (a scan of
// one key per pending event): scrapes closer together reuse the count.
const dueReadEvery = 10 * time.Second

// dueCache is the last count of the due index, for /metrics.
type dueCache struct {
	mu  sync.Mutex
	at  time.Time
	c   store.DueCounts
	err error
}

// writeDueMetrics writes the due index's figures (the overdue attempts
// the operator view shows) as gauges.
func (s *Server) writeDueMetrics(w io.Writer) {
	d := &s.due
	d.mu.Lock()
	now := time.Now()
	if d.at.IsZero() || now.Sub(d.at) >= dueReadEvery {
		d.c, d.err = s.deps.DB.CountDue(now.UnixMilli(), now.Add(-overdueGrace).UnixMilli())
		d.at = now
	}
	c, err := d.c, d.err
	d.mu.Unlock()
	if err != nil {
		return // the store is failing; its own metrics and /readyz say so
	}
	metrics.WriteGaugeUint64(w, "mailwire_delivery_due_scheduled", uint64(c.Scheduled))
	metrics.WriteGaugeUint64(w, "mailwire_delivery_overdue", uint64(c.Overdue))
	metrics.WriteGaugeFloat64(w, "mailwire_delivery_oldest_due_timestamp_seconds", float64(c.OldestMs)/1000)
}
