package delivery

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/store"
)

// dmetrics are the dispatcher's metrics (names documented in
// docs/OPERATIONS.md; the event log registers the scheduling and state
// ones).
type dmetrics struct {
	set            *metrics.Set
	deferred       *metrics.Counter
	failed         *metrics.Counter
	webhookLatency *metrics.Histogram
	attempts       map[[2]string]*metrics.Counter
}

func newMetrics(s *metrics.Set, d *Dispatcher) *dmetrics {
	m := &dmetrics{
		set:            s,
		deferred:       s.NewCounter("mailwire_webhook_deferred_total"),
		failed:         s.NewCounter("mailwire_events_failed_total"),
		webhookLatency: s.NewHistogram("mailwire_webhook_duration_seconds"),
		attempts:       make(map[[2]string]*metrics.Counter),
	}
	for _, ch := range []string{store.ChannelWebSocket, store.ChannelWebhook, store.ChannelNone} {
		for _, oc := range []string{"ok", "failed"} {
			m.attempts[[2]string{ch, oc}] = s.NewCounter(`mailwire_delivery_attempts_total{channel="` + ch + `",outcome="` + oc + `"}`)
		}
	}
	s.NewGauge("mailwire_delivery_queue_depth", func() float64 {
		n := 0
		for _, q := range d.shards {
			n += len(q)
		}
		return float64(n)
	})
	s.NewGauge("mailwire_webhook_queue_depth", func() float64 { return float64(d.pool.depth()) })
	return m
}

func (m *dmetrics) attempt(channel string, ok bool) {
	oc := "failed"
	if ok {
		oc = "ok"
	}
	if c := m.attempts[[2]string{channel, oc}]; c != nil {
		c.Inc()
	}
}
