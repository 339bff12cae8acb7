// Package ws is mailwire's WebSocket side: the /v1/ws protocol of
// spec/PROTOCOL.md on nbio connections, without a goroutine per
// connection.
//
// After the HTTP layer has authenticated an upgrade request it calls
// [Hub.Upgrade], which hijacks the nbio connection, installs a *conn as its
// session and writes the 101. From then on nbio's poller hands the conn
// the bytes it read (frame decoding, RFC 6455 rules and limits checked on
// each header before any payload is buffered); client commands run in
// order per connection on nbio's task pool, because subscribe reads the
// event log. One heartbeat goroutine pings every connection and closes
// those whose pong is late.
//
// # What it needs from the rest of the server
//
// The package calls no storage and no delivery code (it uses their types,
// store.Event and delivery.PushResult, only): everything it needs is the
// narrow [Backend] interface (inbox ownership, known events, replay,
// acks and replay settling, key validity), and it offers [Hub.Push] to the
// dispatcher (delivery.Pusher).
//
// # Closing
//
// Every way a connection ends goes through conn.close: a close frame when
// the socket can take one (a slow consumer's close frame is queued behind
// its backlog), then the socket is dropped after closeGrace unless the
// client answers first. nbio reporting the socket gone (conn.CloseAndClean)
// ends it the same way, without a frame.
//
// # Concurrency
//
// A *Hub is safe for concurrent use. The lock order is written once, in
// docs/ARCHITECTURE.md ("Lock order"): conn.mu may be held while calling
// subs.Index methods and nbio's Conn.Write; the hub's registry and
// per-account locks are never held while taking conn.mu; no callback
// (a held push's done, Backend calls) runs with conn.mu held.
package ws
