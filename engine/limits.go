package engine

import "time"

// Protocol and HTTP limits that are not configurable, each with its reason.
const (
	// maxJSONBody bounds every JSON control-plane request body: they are
	// small objects; 1 MiB leaves room and stops abuse early.
	maxJSONBody = 1 << 20
	// maxMCPBody is the largest POST /v1/mcp (one JSON-RPC message or a
	// batch of tool calls; tool arguments are small).
	maxMCPBody = 1 << 20
	// httpHeaderSlack is added to the largest body to form nbhttp's
	// ReadLimit, the most its parser caches: since the vendored parser
	// hands a body to OnBody as it arrives (third_party/nbio/MAILWIRE.md),
	// that is a partial head or chunk line, not a whole body.
	httpHeaderSlack = 64 << 10
	// httpKeepalive is the idle (and request-read) deadline of HTTP
	// connections: a request must arrive whole within it, so a handshake
	// trickled a byte at a time is dropped.
	httpKeepalive = 60 * time.Second
	// maxHeaderBytes bounds a request head (request line and headers):
	// nbhttp would otherwise cache a head up to its ReadLimit.
	maxHeaderBytes = 64 << 10
	// headTimeout is how long a new HTTP connection may take to send a
	// complete first request head (a socket that sends nothing, or
	// trickles, is closed; kept-alive connections then have the idle
	// timeout).
	headTimeout = 10 * time.Second
	// busyRetryAfter is the Retry-After (seconds) of a 503 when the
	// message memory budget is full.
	busyRetryAfter = 1
	// lingerGrace is how long a connection we answered and are closing
	// may keep sending (the rest of a refused body) before it is dropped.
	lingerGrace = 2 * time.Second
	// maxIdempotencyKey bounds the Idempotency-Key header.
	maxIdempotencyKey = 255
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

	// pullMaxWait bounds ?wait of the pull API (API.md: 60 s); a held
	// request's socket has no read or write deadline meanwhile, its own
	// timer ends it.
	pullMaxWait = 60 * time.Second
	// pullScanFactor bounds how many stored events one pull examines:
	// ?limit × this, so that a narrow filter cannot scan the whole log
	// (the cursor then moves past what was examined).
	pullScanFactor = 100
	// pullMaxPageBytes bounds one pull answer's payloads (100 events of
	// 256 KiB would be 25 MiB held at once): past it the page ends early,
	// with at least one event.
	pullMaxPageBytes = 4 << 20
	// pullRetryAfter is the Retry-After (seconds) of a 429 for too many
	// held pull requests.
	pullRetryAfter = 1
	// maxAckIDs bounds one POST /v1/events/ack.
	maxAckIDs = 1000
)
