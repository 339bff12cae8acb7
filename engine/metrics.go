package engine

import (
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// emetrics are the engine's metrics (docs/OPERATIONS.md lists them).
type emetrics struct {
	set          *metrics.Set
	tooLarge     *metrics.Counter
	authFailures *metrics.Counter

	wsOpened     *metrics.Counter
	wsDelivered  *metrics.Counter
	wsReplayed   *metrics.Counter
	wsSlow       *metrics.Counter
	wsBytesOut   *metrics.Counter
	framesIn     map[string]*metrics.Counter
	framesOut    map[string]*metrics.Counter
	closesByCode map[int]*metrics.Counter
	drops        map[string]*metrics.Counter
}

var (
	clientFrameTypes = []string{"subscribe", "unsubscribe", "ack", "ping", "invalid", "binary"}
	serverFrameTypes = []string{"subscribed", "unsubscribed", "error", "pong", "event", "replay"}
	closeCodes       = []int{closeNormal, closeGoingAway, closeProtocolError, closeUnsupported, closeInvalidPayload,
		closePolicy, closeTooBig, closeUnauthorized, closeTooManyConns, closeRateLimited, 1005, 1006}
)

func newEngineMetrics(s *metrics.Set) *emetrics {
	m := &emetrics{
		set:          s,
		tooLarge:     s.NewCounter(`mailwire_http_body_too_large_total`),
		authFailures: s.NewCounter(`mailwire_auth_failures_total`),
		wsOpened:     s.NewCounter(`mailwire_ws_connections_opened_total`),
		wsDelivered:  s.NewCounter(`mailwire_ws_deliveries_total`),
		wsReplayed:   s.NewCounter(`mailwire_ws_replayed_events_total`),
		wsSlow:       s.NewCounter(`mailwire_ws_slow_consumers_total`),
		wsBytesOut:   s.NewCounter(`mailwire_ws_event_bytes_total`),
		framesIn:     map[string]*metrics.Counter{},
		framesOut:    map[string]*metrics.Counter{},
		closesByCode: map[int]*metrics.Counter{},
		drops:        map[string]*metrics.Counter{},
	}
	// Connections that ended without a close handshake, by cause.
	for _, r := range []string{"pong_timeout", "read_timeout", "peer"} {
		m.drops[r] = s.NewCounter(`mailwire_ws_dropped_total{reason="` + r + `"}`)
	}
	for _, t := range clientFrameTypes {
		m.framesIn[t] = s.NewCounter(`mailwire_ws_frames_in_total{type="` + t + `"}`)
	}
	for _, t := range serverFrameTypes {
		m.framesOut[t] = s.NewCounter(`mailwire_ws_frames_out_total{type="` + t + `"}`)
	}
	for _, c := range closeCodes {
		m.closesByCode[c] = s.NewCounter(`mailwire_ws_closes_total{code="` + strconv.Itoa(c) + `"}`)
	}
	return m
}

func (m *emetrics) frameIn(t string) {
	if c := m.framesIn[t]; c != nil {
		c.Inc()
	}
}

func (m *emetrics) frameOut(t string) {
	if c := m.framesOut[t]; c != nil {
		c.Inc()
	}
}

func (m *emetrics) closed(code int) {
	c := m.closesByCode[code]
	if c == nil {
		c = m.set.GetOrCreateCounter(`mailwire_ws_closes_total{code="other"}`)
	}
	c.Inc()
}

// dropped counts a socket that nbio closed under us (the peer went away,
// or a read deadline fired).
func (m *emetrics) dropped(err error) {
	if err != nil && strings.Contains(err.Error(), "timeout") {
		m.drops["read_timeout"].Inc()
		return
	}
	m.drops["peer"].Inc()
}

// request records one HTTP request by route and status.
func (m *emetrics) request(route string, status int, start time.Time) {
	m.set.GetOrCreateCounter(`mailwire_http_requests_total{route="` + route + `",code="` + strconv.Itoa(status) + `"}`).Inc()
	m.set.GetOrCreateHistogram(`mailwire_http_request_duration_seconds{route="` + route + `"}`).UpdateDuration(start)
}
