package delivery

import "github.com/mailwire/mailwire/store"

// Stats is a snapshot of the dispatcher's queues and of its counters
// since the process started (the operator view, GET /admin/v1/stats).
// Each figure is read on its own, so the snapshot is not atomic.
type Stats struct {
	// Queued counts events waiting for a dispatch worker; QueueCapacity
	// is their bound (Config.QueueSize, split over the workers).
	Queued, QueueCapacity int
	// WebhookQueued counts webhook attempts queued or running;
	// WebhookCapacity is their bound (Config.WebhookQueue).
	WebhookQueued, WebhookCapacity int
	// WriterBacklog counts outcomes waiting for the state writer;
	// WriterCapacity is its channel's size.
	WriterBacklog, WriterCapacity int
	// InFlight counts claimed events (committing, queued or attempted).
	InFlight int
	// EventsStored counts events whose ingest commit succeeded.
	EventsStored uint64
	// EventsFailed counts events marked failed (schedule exhausted).
	EventsFailed uint64
	// EventsExpired counts events removed by retention.
	EventsExpired uint64
	// Deferred counts attempts put back in the due index because a queue
	// was full.
	Deferred uint64
	// Attempts counts recorded attempts by channel (websocket, webhook,
	// none).
	Attempts map[string]AttemptCounts
}

// AttemptCounts are the attempts of one channel by outcome.
type AttemptCounts struct {
	OK, Failed uint64
}

// Stats returns the current queue depths and counters.
func (d *Dispatcher) Stats() Stats {
	ls := d.store.DeliveryStats()
	s := Stats{
		WebhookQueued:   d.pool.depth(),
		WebhookCapacity: d.pool.max,
		WriterBacklog:   ls.Backlog,
		WriterCapacity:  ls.BacklogCap,
		InFlight:        ls.InFlight,
		EventsStored:    ls.Stored,
		EventsFailed:    d.m.failed.Get(),
		EventsExpired:   ls.Expired,
		Deferred:        d.m.deferred.Get(),
		Attempts:        make(map[string]AttemptCounts, 3),
	}
	for _, q := range d.shards {
		s.Queued += len(q)
		s.QueueCapacity += cap(q)
	}
	for _, ch := range []string{store.ChannelWebSocket, store.ChannelWebhook, store.ChannelNone} {
		s.Attempts[ch] = AttemptCounts{
			OK:     d.m.attempts[[2]string{ch, "ok"}].Get(),
			Failed: d.m.attempts[[2]string{ch, "failed"}].Get(),
		}
	}
	return s
}
