package ws

import (
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config configures a Hub (PROTOCOL.md §1, §2, §8). Zero fields take the
// documented default.
type Config struct {
	// PingInterval is the server ping period. Default 30s.
	PingInterval time.Duration
	// PongTimeout closes (1001) a connection whose pong is this late.
	// Default 10s.
	PongTimeout time.Duration
	// MaxConnsPerAccount: the next connection of the account gets close
	// 4008. Default 10.
	MaxConnsPerAccount int
	// RateFrames client data frames are allowed per RateWindow; the next
	// one gets close 4029 once the earlier ones are answered. Default 30
	// per 10s.
	RateFrames int
	RateWindow time.Duration
	// MaxFrame is the largest client message in bytes (close 1009 above).
	// Default 64 KiB.
	MaxFrame int
	// MaxPending bounds a connection's unsent bytes (frames handed to nbio
	// and not yet written to the socket, plus live frames held during a
	// subscribe); past it the connection is a slow consumer (close 1008).
	// Default 1 MiB.
	MaxPending int
	// ReplayLimit is the most events replayed for one last_event_id.
	// Default 100.
	ReplayLimit int
	// Metrics is the set the hub registers its metrics in. Default: a new
	// set.
	Metrics *metrics.Set
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.PingInterval <= 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 10 * time.Second
	}
	if c.MaxConnsPerAccount <= 0 {
		c.MaxConnsPerAccount = 10
	}
	if c.RateFrames <= 0 {
		c.RateFrames = 30
	}
	if c.RateWindow <= 0 {
		c.RateWindow = 10 * time.Second
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 64 << 10
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1 << 20
	}
	if c.ReplayLimit <= 0 {
		c.ReplayLimit = 100
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Limits that are not configurable, each with its reason.
const (
	// maxSubscribeIDs bounds the inbox ids in one subscribe or unsubscribe
	// frame (each is checked against the account).
	maxSubscribeIDs = 1000
	// maxSubscriptionIDs bounds the inbox ids one connection's
	// subscription may name (subscription spam).
	maxSubscriptionIDs = 10000
	// closeGrace is how long a connection we closed may take to answer
	// our close frame before the TCP connection is dropped.
	closeGrace = 2 * time.Second
	// heldFramesMax bounds the live frames held for one connection while
	// its subscribe (and replay) is in progress; beyond it, or beyond
	// MaxPending bytes, the connection is a slow consumer (close 1008).
	heldFramesMax = 10000
	// keepaliveClearAge: at this age a WebSocket's inherited HTTP
	// keep-alive deadline is cleared a second time (see Hub.heartbeat).
	keepaliveClearAge = 2 * time.Second
	// heartbeatTickMax is the longest pause between two heartbeat ticks
	// (each sweeps one hub shard).
	heartbeatTickMax = 50 * time.Millisecond
	// hubShards is the number of registry shards (connections are spread
	// by their nbio fd).
	hubShards = 64
)

// WebSocket close codes (PROTOCOL.md §8). 4xxx carry reconnect semantics:
// 4001 stop (fix the key), 4008/4029 back off; 1001 reconnect (elsewhere).
const (
	closeNormal         = 1000
	closeGoingAway      = 1001 // shutdown, heartbeat timeout
	closeProtocolError  = 1002 // RFC 6455 violation
	closeUnsupported    = 1003
	closeNoStatus       = 1005 // the client's close frame had no code
	closeAbnormal       = 1006 // the socket ended without a close frame (metrics only)
	closeInvalidPayload = 1007 // text frame not UTF-8
	closePolicy         = 1008 // slow consumer
	closeTooBig         = 1009 // frame or message over MaxFrame
	closeUnauthorized   = 4001
	closeTooManyConns   = 4008
	closeRateLimited    = 4029
)

// Exported close codes the HTTP layer and tests refer to.
const (
	CloseGoingAway    = closeGoingAway
	CloseUnauthorized = closeUnauthorized
)
