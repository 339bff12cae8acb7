// Package engine is mailwire's network edge: one nbio/nbhttp engine that
// serves the HTTP API (spec/API.md), the /v1/ws WebSocket endpoint and its
// protocol (spec/PROTOCOL.md), heartbeats, per-connection limits and the
// graceful drain.
//
// # WebSockets without a goroutine per connection
//
// After the HTTP upgrade a connection is a small *wsConn installed as the
// nbio connection's session: nbio's poller hands it bytes (Parse) and
// close events (CloseAndClean). Frames are parsed on the poller goroutine
// (RFC 6455, our own code: masking, control frames, fragmentation, limits
// checked on the header before any payload is buffered). Client commands
// run in order per connection on nbio's task pool (Conn.Execute) because
// they may read Pebble. Idle connections hold no read buffer and no timer:
// one heartbeat goroutine sends pings and enforces pong deadlines.
//
// Events are encoded once per attempt (header + payload in one buffer) and
// the same bytes are written to every matching connection; what a socket
// cannot take at once stays queued by reference (nbio's WriteShared, see
// third_party/nbio/MAILWIRE.md), so connections that fall behind share
// one copy of each frame. What a connection holds (the frames not yet
// completely written, whole, settled through nbio's OnWrittenSize hook)
// is bounded by --ws-max-pending (policy: close 1008, the event stays
// replayable).
//
// # Concurrency
//
// A *Server is safe for concurrent use. The lock order is written once,
// in docs/ARCHITECTURE.md ("Lock order").
package engine
