// Package store is mailwire's persistent state. Store (iface.go) is the
// seam every component uses: the Directory (accounts, API keys, inboxes,
// webhook settings) and the EventLog (messages with their raw bytes and
// attachments, events, delivery state and attempts, the retry schedule).
// *DB implements it on one embedded Pebble database; the delivery side
// (Deliveries: leases, the due index and its scheduler, the single state
// writer, retention) is in pebbledeliveries.go and the files it names.
//
// # Durability
//
// Every write that answers a request (inbound mail, API changes) is applied
// with Sync before the method returns. Concurrent synced writers share one
// fsync through Pebble's commit pipeline, so throughput comes from
// concurrency, not from batching inside one caller. Pebble makes a batch
// readable before its WAL sync has finished; callers that hand data to a
// client must wait for the write to return, never infer durability from a
// read (see the in-flight set, flights.go).
//
// # Concurrency
//
// A *DB is safe for concurrent use. Control-plane changes that must check
// before they write (unique inbox addresses, key revocation) are serialised
// by one mutex (ctl). Ingest and inbox deletion are ordered by striped
// per-inbox locks so that no message is stored into an inbox whose deletion
// has already scanned it. Event delivery state is mutated only by the
// writer goroutine (writer.go), which applies the delivery package's pure
// transitions.
//
// # Layout
//
// Keys are prefixed by kind (see keys.go). Ids are prefix + ULID, so one
// account's events and one inbox's messages scan in time order.
package store
