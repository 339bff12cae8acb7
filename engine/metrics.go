package engine

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
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

func newEngineMetrics(s *metrics.Set, version string) *emetrics {
	d := promtext.Describe
	d("mailwire_http_requests_total", "HTTP requests answered, by method, route pattern and status code.")
	d("mailwire_http_request_duration_seconds", "Time from routing an HTTP request to its handler's return, by method and route pattern.")
	d("mailwire_build_info", "Always 1; the version label is the running mailwire's version.")
	if version == "" {
		version = "dev"
	}
	s.NewGauge(`mailwire_build_info{version="`+labelValue(version)+`"}`, func() float64 { return 1 })
	return &emetrics{
		set:          s,
		tooLarge:     s.NewCounter(d(`mailwire_http_body_too_large_total`, "HTTP requests refused with 413 because of their declared body size.")),
		authFailures: s.NewCounter(d(`mailwire_auth_failures_total`, "Requests and WebSocket upgrades with a missing or invalid API key or admin token.")),
		badFraming:   s.NewCounter(d(`mailwire_http_bad_framing_total`, "HTTP requests refused for ambiguous or invalid framing (RFC 9112).")),
		headTimeouts: s.NewCounter(d(`mailwire_http_head_timeouts_total`, "Connections closed because no complete request head came within 10 s of the accept.")),
	}
}

// request records one HTTP request by method, route pattern and status.
func (m *emetrics) request(method, route string, status int, start time.Time) {
	method = methodLabel(method)
	m.set.GetOrCreateCounter(`mailwire_http_requests_total{method="` + method + `",route="` + route + `",code="` + strconv.Itoa(status) + `"}`).Inc()
	m.set.GetOrCreatePrometheusHistogramExt(`mailwire_http_request_duration_seconds{method="`+method+`",route="`+route+`"}`,
		promtext.RequestBuckets).UpdateDuration(start)
}

// methodLabel bounds the method label to the methods HTTP defines (a
// client's invented methods would make a series each).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// labelValue escapes a Prometheus label value.
func labelValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
