package delivery

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
	"github.com/mailwire/mailwire/store"
)

// dmetrics are the dispatcher's metrics (names documented in
// docs/OPERATIONS.md; the event log registers the scheduling and state
// ones).
type dmetrics struct {
	set            *metrics.Set
	deferred       *metrics.Counter
	failed         *metrics.Counter
	webhookLatency *metrics.PrometheusHistogram
	attempts       map[[2]string]*metrics.Counter
}

func newMetrics(s *metrics.Set, d *Dispatcher) *dmetrics {
	m := &dmetrics{
		set:            s,
		deferred:       s.NewCounter(promtext.Describe("mailwire_webhook_deferred_total", "Webhook attempts deferred because the webhook queue or the endpoint's share of workers was full.")),
		failed:         s.NewCounter(promtext.Describe("mailwire_events_failed_total", "Events marked failed after their last scheduled attempt failed.")),
		webhookLatency: s.NewPrometheusHistogramExt(promtext.Describe("mailwire_webhook_duration_seconds", "Time of webhook requests, from the connection to the end of the answer."), promtext.RequestBuckets),
		attempts:       make(map[[2]string]*metrics.Counter),
	}
	promtext.Describe("mailwire_delivery_attempts_total", "Delivery attempts by channel (websocket, webhook, none) and outcome (ok, failed).")
	for _, ch := range []string{store.ChannelWebSocket, store.ChannelWebhook, store.ChannelNone} {
		for _, oc := range []string{"ok", "failed"} {
			m.attempts[[2]string{ch, oc}] = s.NewCounter(`mailwire_delivery_attempts_total{channel="` + ch + `",outcome="` + oc + `"}`)
		}
	}
	s.NewGauge(promtext.Describe("mailwire_delivery_queue_depth", "Attempts waiting in the dispatcher's shard queues (each holds 16384)."), func() float64 {
		n := 0
		for _, q := range d.shards {
			n += len(q)
		}
		return float64(n)
	})
	s.NewGauge(promtext.Describe("mailwire_webhook_queue_depth", "Webhook requests waiting for a worker (the queue holds 16384)."), func() float64 { return float64(d.pool.depth()) })
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
