package smtpd

import (
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
)

// Reasons of mailwire_smtp_rejected_total. Each is one client-visible
// refusal; docs/SMTP.md lists them.
const (
	reasonUnknownRecipient  = "unknown_recipient"       // 550 5.1.1, no such inbox
	reasonOtherDomain       = "other_domain"            // 550 5.1.1, not our domain
	reasonTooManyRecipients = "too_many_recipients"     // 452 4.5.3
	reasonTooLarge          = "too_large"               // 552 5.3.4 at the end of DATA
	reasonNotMessage        = "invalid_message"         // 554 5.6.0
	reasonStorage           = "storage_error"           // 451 4.3.0, DeliverRaw failed
	reasonInternal          = "internal_error"          // 451 4.3.0, DeliverRaw panicked
	reasonDataTimeout       = "data_timeout"            // 421 4.4.2
	reasonLineTooLong       = "line_too_long"           // 500 5.4.0 inside DATA
	reasonAborted           = "aborted"                 // the client went away or reset mid-message
	reasonTooManyRefused    = "too_many_refused"        // 421 4.7.0 after maxRefusedRecipients 550s
	reasonTooManyConnsIP    = "too_many_connections_ip" // 421 4.7.0 at connect
	reasonTooManyConns      = "too_many_connections"    // 421 4.3.2 at connect
	reasonShuttingDown      = "shutting_down"           // 421 4.3.2
	reasonBusy              = "memory_budget"           // 451 4.3.0, --ingest-memory full
	reasonDiskFull          = "disk_low"                // 452 4.3.1, free disk below --min-free-disk
	reasonDescriptors       = "descriptor_budget"       // 421 4.3.2 at connect, out of client sockets
	reasonUnavailable       = "store_unavailable"       // 451 4.3.0, a cluster store cannot reach NATS
)

var allReasons = []string{
	reasonUnknownRecipient, reasonOtherDomain, reasonTooManyRecipients, reasonTooLarge,
	reasonNotMessage, reasonStorage, reasonInternal, reasonDataTimeout, reasonLineTooLong,
	reasonAborted, reasonTooManyRefused, reasonTooManyConnsIP, reasonTooManyConns, reasonShuttingDown,
	reasonBusy, reasonDiskFull, reasonDescriptors, reasonUnavailable,
}

// smetrics are the SMTP metrics. rejected is filled once and only read
// afterwards, so it needs no lock.
type smetrics struct {
	open          atomic.Int64
	sessions      *metrics.Counter
	accepted      *metrics.Counter
	bytes         *metrics.Counter
	storeDuration *metrics.PrometheusHistogram
	rejected      map[string]*metrics.Counter
}

func newMetrics(s *metrics.Set) *smetrics {
	m := &smetrics{
		sessions:      s.NewCounter(promtext.Describe("mailwire_smtp_sessions_total", "SMTP sessions accepted.")),
		accepted:      s.NewCounter(promtext.Describe("mailwire_smtp_messages_accepted_total", "Messages accepted over SMTP (answered 250 after a durable store).")),
		bytes:         s.NewCounter(promtext.Describe("mailwire_smtp_received_bytes_total", "Message bytes accepted over SMTP.")),
		storeDuration: s.NewPrometheusHistogramExt(promtext.Describe("mailwire_smtp_store_duration_seconds", "Time from the end of DATA to the message and its events being durably stored."), promtext.StorageBuckets),
		rejected:      make(map[string]*metrics.Counter, len(allReasons)),
	}
	s.NewGauge(promtext.Describe("mailwire_smtp_sessions_open", "Open SMTP sessions."), func() float64 { return float64(m.open.Load()) })
	promtext.Describe("mailwire_smtp_rejected_total", "SMTP commands or sessions refused, by reason (docs/SMTP.md).")
	for _, r := range allReasons {
		m.rejected[r] = s.NewCounter(`mailwire_smtp_rejected_total{reason="` + r + `"}`)
	}
	return m
}

func (m *smetrics) reject(reason string) {
	c := m.rejected[reason]
	if c == nil {
		panic("BUG: unknown rejection reason " + reason)
	}
	c.Inc()
}
