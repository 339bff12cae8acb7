package ws

import (
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/confcheck"
)

// Config configures a Hub (PROTOCOL.md §1, §2, §8). DefaultConfig holds
// the defaults; a zero field takes its default too. Each setting's flag
// (CONFIG.md) is named in its comment and in Validate's messages.
type Config struct {
	// PingInterval is the server ping period (--ws-ping-interval).
	PingInterval time.Duration
	// PongTimeout closes (1001) a connection whose pong is this late
	// (--ws-pong-timeout).
	PongTimeout time.Duration
	// MaxConnsPerAccount: the next connection of the account gets close
	// 4008 (--ws-max-conns-per-account).
	MaxConnsPerAccount int
	// RateFrames client data frames are allowed per RateWindow; the next
	// one gets close 4029 once the earlier ones are answered
	// (--ws-rate-frames, --ws-rate-window).
	RateFrames int
	RateWindow time.Duration
	// MaxFrame is the largest client message in bytes (close 1009 above;
	// --ws-max-frame).
	MaxFrame int
	// MaxPending bounds a connection's unsent data: the frames handed to
	// nbio and not yet completely written to the socket (each counted
	// whole, with its queue entries: what the connection keeps alive),
	// plus live frames held during a subscribe; past it the connection is
	// a slow consumer (close 1008; --ws-max-pending).
	MaxPending int
	// ReplayLimit is the most events replayed for one last_event_id
	// (--replay-limit).
	ReplayLimit int
	// Metrics is the set the hub registers its metrics in. Default: a new
	// set.
	Metrics *metrics.Set
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig is CONFIG.md's defaults: ping every 30s, pong within
// 10s, 10 connections per account, 30 frames per 10s, 64 KiB frames,
// 1 MiB pending, 100 events replayed.
func DefaultConfig() Config {
	return Config{
		PingInterval:       30 * time.Second,
		PongTimeout:        10 * time.Second,
		MaxConnsPerAccount: 10,
		RateFrames:         30,
		RateWindow:         10 * time.Second,
		MaxFrame:           64 << 10,
		MaxPending:         1 << 20,
		ReplayLimit:        100,
	}
}

// Validate reports every setting out of its range at once, each by its
// flag.
func (c Config) Validate() error {
	var p confcheck.Problems
	p.Check(c.PingInterval >= 10*time.Millisecond, "--ws-ping-interval must be at least 10ms")
	p.Check(c.PongTimeout >= 10*time.Millisecond, "--ws-pong-timeout must be at least 10ms")
	p.Check(c.MaxConnsPerAccount >= 1, "--ws-max-conns-per-account must be at least 1")
	p.Check(c.RateFrames >= 1, "--ws-rate-frames must be at least 1")
	p.Check(c.RateWindow > 0, "--ws-rate-window must be positive")
	p.Check(c.MaxFrame >= 256 && c.MaxFrame <= 16<<20, "--ws-max-frame must be between 256 bytes and 16MiB")
	p.Check(c.MaxPending >= 4<<10, "--ws-max-pending must be at least 4KiB")
	p.Check(c.ReplayLimit >= 1 && c.ReplayLimit <= 10000, "--replay-limit must be between 1 and 10000")
	return p.Err()
}

// setDefaults gives every zero (or negative) field its DefaultConfig
// value.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.PingInterval <= 0 {
		c.PingInterval = d.PingInterval
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = d.PongTimeout
	}
	if c.MaxConnsPerAccount <= 0 {
		c.MaxConnsPerAccount = d.MaxConnsPerAccount
	}
	if c.RateFrames <= 0 {
		c.RateFrames = d.RateFrames
	}
	if c.RateWindow <= 0 {
		c.RateWindow = d.RateWindow
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.MaxPending <= 0 {
		c.MaxPending = d.MaxPending
	}
	if c.ReplayLimit <= 0 {
		c.ReplayLimit = d.ReplayLimit
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
