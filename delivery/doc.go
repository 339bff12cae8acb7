// Package delivery moves stored events to clients: it chooses the channel
// afresh at every attempt (a matching WebSocket connection, else the
// inbox's or account's webhook, else none), records every attempt, and
// drives the retry schedule, which lives in Pebble's due index so that it
// survives restarts.
//
// # Pipeline
//
//	ingest ──Claim/Committed──┐
//	scheduler (due index) ────┴─> shard queues ─> dispatch workers ─┬─> Pusher (WebSockets)
//	                                                               └─> webhook pool (fasthttp)
//	                     every outcome ─> writer (one goroutine, synced batches) ─> due index
//
// # Invariants
//
//   - An event is "claimed" while it is anywhere in the pipeline (from
//     before its ingest commit until the writer has durably recorded the
//     attempt's outcome). The scheduler never picks a claimed event, so an
//     event has at most one attempt in flight.
//   - Nothing is sent before the batch holding the event returned from its
//     synced commit (Claim happens before the commit, and an event only
//     enters a queue from Committed or from the due index after restart).
//     Replay waits for events still committing (WaitDurable).
//   - Every state change of an event goes through the writer goroutine,
//     which reads, modifies and writes the state in one place, so there
//     are no lost updates between an attempt's outcome, an ack and a
//     redeliver.
//   - The due index holds exactly one key per event with a next attempt;
//     the scheduler's scan cursor never passes an unclaimed due key.
//
// # Concurrency
//
// A *Dispatcher is safe for concurrent use. Its goroutines are started by
// Start and all stopped by Shutdown, which is idempotent. Queues are
// bounded; when one is full the event stays in the due index (policy:
// defer) and the scheduler finds it again.
package delivery
