package engine

import "time"

// Protocol and HTTP limits that are not configurable, each with its reason.
const (
	// maxJSONBody bounds every JSON control-plane request body: they are
	// small objects; 1 MiB leaves room and stops abuse early.
	maxJSONBody = 1 << 20
	// httpHeaderSlack is added to the largest body to form nbhttp's
	// ReadLimit (the most it buffers for one request).
	httpHeaderSlack = 64 << 10
	// httpKeepalive is the idle (and request-read) deadline of HTTP
	// connections: a request must arrive whole within it, so a handshake
	// trickled a byte at a time is dropped.
	httpKeepalive = 60 * time.Second
	// maxHeaderBytes bounds a request head (request line and headers):
	// nbhttp would otherwise buffer up to its ReadLimit (the largest body).
	maxHeaderBytes = 64 << 10
	// maxIdempotencyKey bounds the Idempotency-Key header.
	maxIdempotencyKey = 255
	// maxSubscribeIDs bounds the inbox ids in one subscribe frame (each is
	// checked in the store).
	maxSubscribeIDs = 1000
	// maxSubscriptionIDs bounds the inbox ids one connection's
	// subscription may name (subscription spam).
	maxSubscriptionIDs = 10000
	// replayScanFactor bounds how many stored events one replay examines:
	// replay-limit × this, so a narrow filter cannot scan the whole log.
	replayScanFactor = 100
	// closeGrace is how long a connection we closed may take to answer
	// our close frame before the TCP connection is dropped.
	closeGrace = 2 * time.Second
	// liveBufferMax bounds the live frames held for one connection while
	// it replays (beyond: the connection is a slow consumer, close 1008).
	liveBufferMax = 10000
	// keepaliveClearAge: at this age a WebSocket's inherited HTTP
	// keep-alive deadline is cleared a second time (see hub.heartbeat).
	keepaliveClearAge = 2 * time.Second
	// heartbeatTickMax is the longest pause between two heartbeat ticks
	// (each sweeps one hub shard).
	heartbeatTickMax = 50 * time.Millisecond
	// handlerWorkers bounds the goroutines running HTTP handlers and
	// WebSocket commands (they may block on an fsync); beyond it the poller
	// waits for a free worker (back pressure).
	handlerWorkers = 2048
	// handlerIdle retires a handler worker idle this long.
	handlerIdle = 30 * time.Second
	// maxListLimit is the largest ?limit of a list.
	maxListLimit = 100
	// defaultListLimit is ?limit when absent.
	defaultListLimit = 50
)
