// Package smtpd is mailwire's SMTP listener: it accepts mail for the
// inboxes in the store and hands each message to ingest, which stores one
// message and one message.received event per inbox in one synced batch.
//
// # Promises
//
//   - RCPT TO is answered 250 only for an existing inbox's address
//     (<mailboxName>[+tag]@<its domain>, case-insensitive; any domain the
//     server serves, each inbox at its own); anything else gets 550 5.1.1.
//     The tagged address is what the stored message's To shows.
//   - The reply to DATA (or BDAT LAST) is 250 only after
//     ingest.Service.DeliverRaw returned, i.e. after the batch holding the
//     messages and events was applied with Sync. Every other reply stores
//     nothing: 451 4.3.0 (storage), 552 5.3.4 (size), 554 5.6.0 (not a mail
//     message), 421 (timeouts, shutdown). A connection that breaks while
//     DeliverRaw runs may miss a 250 for a stored message; the sender then
//     sends it again (at-least-once, as everywhere in mailwire).
//   - A transaction naming several recipients is stored with one
//     DeliverRaw call; an inbox named twice (e.g. with two tags) counts once.
//
// Every limit is in limits.go, every client-visible reply in replies.go.
//
// # Concurrency
//
// The protocol is github.com/emersion/go-smtp. Each connection is served by
// one go-smtp goroutine; BDAT transfers run Session.Data on a second
// goroutine (go-smtp's), which is why session state is guarded by a mutex.
// A *Server is safe for concurrent use. Start launches one goroutine (the
// accept loop) and Shutdown waits for it and for every connection goroutine
// before it returns. The connection registry and per-IP counts live in
// Server.mu, a connection's transaction state in conn.mu, a transaction's
// recipients in session.mu; no two of these locks are ever held together,
// and none is held while calling into ingest (which may wait for an fsync).
package smtpd
