package ws

import (
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
)

// wsMetrics are the WebSocket metrics (docs/OPERATIONS.md lists them).
type wsMetrics struct {
	set       *metrics.Set
	opened    *metrics.Counter
	delivered *metrics.Counter
	replayed  *metrics.Counter
	slow      *metrics.Counter
	bytesOut  *metrics.Counter
	framesIn  map[string]*metrics.Counter
	framesOut map[string]*metrics.Counter
	closes    map[int]*metrics.Counter
	drops     map[string]*metrics.Counter
}

var (
	clientFrameTypes = []string{"subscribe", "unsubscribe", "ack", "ping", "invalid", "binary"}
	serverFrameTypes = []string{"subscribed", "unsubscribed", "error", "pong", "event", "replay"}
	closeCodes       = []int{closeNormal, closeGoingAway, closeProtocolError, closeUnsupported, closeInvalidPayload,
		closePolicy, closeTooBig, closeUnauthorized, closeTooManyConns, closeRateLimited, closeNoStatus, closeAbnormal}
)

func newMetrics(s *metrics.Set, h *Hub) *wsMetrics {
	m := &wsMetrics{
		set:       s,
		opened:    s.NewCounter(promtext.Describe(`mailwire_ws_connections_opened_total`, "WebSocket connections upgraded.")),
		delivered: s.NewCounter(promtext.Describe(`mailwire_ws_deliveries_total`, "Event frames written to WebSocket connections (one per connection).")),
		replayed:  s.NewCounter(promtext.Describe(`mailwire_ws_replayed_events_total`, "Events sent by replays (subscribe with last_event_id).")),
		slow:      s.NewCounter(promtext.Describe(`mailwire_ws_slow_consumers_total`, "WebSocket connections closed (1008) because their unsent bytes passed --ws-max-pending.")),
		bytesOut:  s.NewCounter(promtext.Describe(`mailwire_ws_event_bytes_total`, "Bytes of event frames written to WebSocket connections.")),
		framesIn:  map[string]*metrics.Counter{},
		framesOut: map[string]*metrics.Counter{},
		closes:    map[int]*metrics.Counter{},
		drops:     map[string]*metrics.Counter{},
	}
	// Connections that ended without a close handshake, by cause.
	d := promtext.Describe
	d("mailwire_ws_dropped_total", "WebSocket connections that ended without a close handshake, by cause.")
	d("mailwire_ws_frames_in_total", "Client frames received, by type.")
	d("mailwire_ws_frames_out_total", "Frames sent, by type.")
	d("mailwire_ws_closes_total", "WebSocket connections closed, by close code.")
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
		m.closes[c] = s.NewCounter(`mailwire_ws_closes_total{code="` + strconv.Itoa(c) + `"}`)
	}
	s.NewGauge(d("mailwire_ws_connections", "Open WebSocket connections."), func() float64 { return float64(h.open.Load()) })
	s.NewGauge(d("mailwire_ws_subscriptions", "Subscriptions in the index (one per subscribed connection)."), func() float64 { return float64(h.idx.Len()) })
	s.NewGauge(d("mailwire_ws_pending_bytes", "Bytes written to WebSocket connections and not yet sent by the kernel, all connections."), func() float64 { return float64(h.pendingBytes()) })
	return m
}

func (m *wsMetrics) frameIn(t string) {
	if c := m.framesIn[t]; c != nil {
		c.Inc()
	}
}

func (m *wsMetrics) frameOut(t string) { m.frameOutN(t, 1) }

func (m *wsMetrics) frameOutN(t string, n int) {
	if c := m.framesOut[t]; c != nil && n > 0 {
		c.Add(n)
	}
}

func (m *wsMetrics) closed(code int) {
	c := m.closes[code]
	if c == nil {
		c = m.set.GetOrCreateCounter(`mailwire_ws_closes_total{code="other"}`)
	}
	c.Inc()
}

// dropped counts a socket that ended without our close frame (the peer
// went away, or a read deadline fired).
func (m *wsMetrics) dropped(err error) {
	if err != nil && strings.Contains(err.Error(), "timeout") {
		m.drops["read_timeout"].Inc()
		return
	}
	m.drops["peer"].Inc()
}
