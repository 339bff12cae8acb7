// Package delivery decides every delivery attempt of a stored event: it
// chooses the channel afresh at each attempt (a matching WebSocket
// connection, else the inbox's or account's webhook, else none), makes the
// attempt, and turns its outcome into a state transition (transition.go).
//
// It keeps no delivery state of its own. The event log (store.Deliveries,
// implemented by the Pebble store on one node and by the JetStream store
// in a cluster) hands out leases for due attempts, applies transitions
// durably, and keeps the retry schedule; this package is the policy.
//
// # Pipeline
//
//	event log ──Deliver(lease)──> shard queues ─> dispatch workers ─┬─> Pusher (WebSockets)
//	                                                               └─> webhook pool (fasthttp)
//	                    every outcome ─> store.Record (durable, then the lease ends)
//	      acks, redelivers, replays ─> store.Update / Submit
//
// # Invariants
//
//   - An event has at most one attempt in flight: the log hands out one
//     lease per event, and the lease lasts until its outcome is recorded.
//   - Transitions are pure functions of the current state (store.Change):
//     the log may apply one more than once (compare-and-set), so the
//     rules hold however outcomes, acks and redelivers interleave.
//
// # Concurrency
//
// A *Dispatcher is safe for concurrent use. Its goroutines are started by
// Start and stopped by Quiesce and Shutdown, which are idempotent. Queues
// are bounded; when one is full the lease is refused and the log offers
// the event again later (policy: defer).
package delivery
