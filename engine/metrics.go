package engine

import (
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// emetrics are the HTTP metrics (docs/OPERATIONS.md lists them; the
// WebSocket ones are engine/ws's).
type emetrics struct {
	set          *metrics.Set
	tooLarge     *metrics.Counter
	authFailures *metrics.Counter
	badFraming   *metrics.Counter
	headTimeouts *metrics.Counter
}

func newEngineMetrics(s *metrics.Set) *emetrics {
	return &emetrics{
		set:          s,
		tooLarge:     s.NewCounter(`mailwire_http_body_too_large_total`),
		authFailures: s.NewCounter(`mailwire_auth_failures_total`),
		badFraming:   s.NewCounter(`mailwire_http_bad_framing_total`),
		headTimeouts: s.NewCounter(`mailwire_http_head_timeouts_total`),
	}
}

// request records one HTTP request by route and status.
func (m *emetrics) request(route string, status int, start time.Time) {
	m.set.GetOrCreateCounter(`mailwire_http_requests_total{route="` + route + `",code="` + strconv.Itoa(status) + `"}`).Inc()
	m.set.GetOrCreateHistogram(`mailwire_http_request_duration_seconds{route="` + route + `"}`).UpdateDuration(start)
}
