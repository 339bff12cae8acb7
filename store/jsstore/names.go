package jsstore

import "time"

// Every stream, bucket, consumer, subject, limit and timeout of the
// cluster store, each with why (docs/CLUSTER.md explains the layout).

// Streams and their subjects.
const (
	// streamEvents is the event log: one message per event, subject
	// subjEvent.<account>.<inbox>, Nats-Msg-Id = the event id (a retried
	// publish is stored once). Headers carry the ids; the body is the
	// rendered payload (head and tail, at most --max-event-bytes) followed
	// by the message record (the parsed message, its raw bytes and
	// attachments; parts that would make the record longer than
	// recordInlineMax are in the blob object store, written first). One
	// publish per message: the 202/250 waits for its PubAck. The stream
	// sequence is the log's order: replay and the pull API read an
	// account's events in it.
	streamEvents = "MW_EVENTS"
	subjEvent    = "mw.evt"
	// streamDue is the retry timer wheel: a schedule message per event
	// with a next attempt (subject subjSched.<event>, latest wins) fires
	// a due message (subjDue.<event>) at its time; a work queue: a due
	// message is gone once a node acked its attempt.
	streamDue = "MW_DUE"
	subjSched = "mw.sched"
	subjDue   = "mw.due"
)

// Key-value buckets and object stores.
const (
	// bucketDir is the directory: accounts, key records and hashes,
	// inboxes, mailbox names, webhooks. Every node watches it whole into
	// memory (revocations and deletions reach every node through it).
	bucketDir = "MW_DIR"
	// bucketState is the delivery state of each event that had an
	// attempt (absent: the initial state), with its attempt records;
	// changed by compare-and-set only. Read from the stream leader (no
	// direct gets), so a read after a write sees it.
	bucketState = "MW_STATE"
	// bucketIdem maps an inbox's idempotency key hash to its stored
	// reply, for idemTTL.
	bucketIdem = "MW_IDEM"
	// bucketNodes is the node membership: each node refreshes its key
	// every nodeBeat; a key idle for nodeTTL is gone.
	bucketNodes = "MW_NODES"
	// bucketThreads holds the threads' read marks (threads.go): key the
	// thread id, value the stream sequence of its last message when it
	// was marked read; no key: unread. Every node watches it into memory
	// and catches its watch up to the bucket's last revision before it
	// answers with read state (a mark made through another node is seen).
	// Kept for the log's retention.
	bucketThreads = "MW_THREADS"
	// bucketBlobs holds record parts too large for one NATS message
	// (raw bytes, attachments, long bodies), chunked by the object store.
	bucketBlobs = "MW_BLOBS"
)

// Durable consumers, shared by every node.
const (
	// consumerFirst hands each new event of streamEvents to one node for
	// its first attempt.
	consumerFirst = "mw-first"
	// consumerDue hands each fired due message to one node.
	consumerDue = "mw-due"
)

// Core NATS subjects of the nodes' requests to each other.
const (
	// subjReport asks every node what it wrote of an event it fanned out
	// from the log (the first attempt's outcome).
	subjReport = "mw.rpc.report"
	// subjPush asks every node to push an attempt to its sockets.
	subjPush = "mw.rpc.push"
)

// Limits and timeouts.
const (
	// dedupWindow is the streams' Nats-Msg-Id window: far longer than a
	// publish is ever retried (ids are unique by construction beyond it).
	dedupWindow = 10 * time.Minute
	// idemTTL is how long an Idempotency-Key's reply is kept (the single
	// node keeps it with the inbox).
	idemTTL = 24 * time.Hour
	// nodeBeat and nodeTTL: membership refresh and expiry.
	nodeBeat = 2 * time.Second
	nodeTTL  = 8 * time.Second
	// ackWait: a lease neither recorded nor kept alive within this is
	// handed to another node (its node died, or lost NATS). The holder
	// sends InProgress every leaseBeat while the attempt runs (a webhook
	// may take --webhook-timeout), so ackWait bounds how late a dead
	// node's attempts are taken over, not how long an attempt may take.
	ackWait   = 10 * time.Second
	leaseBeat = 3 * time.Second
	// leaseMaxHold bounds how long a node keeps one lease alive: above
	// the longest attempt (--webhook-timeout, 15 s by default, plus the
	// nodes' answers); a lease held longer is stuck and goes to another
	// node (mailwire_cluster_leases_overheld_total).
	leaseMaxHold = 2 * time.Minute
	// maxLeases bounds the leases out at once over the cluster, per
	// durable consumer.
	maxLeases = 20000
	// fetchBatch is how many leases one pull asks for.
	fetchBatch = 256
	// publishTimeout bounds one publish (with its retries); past it the
	// write is reported unavailable and unconfirmed (it may still have
	// been stored; the client's retry may store it a second time).
	publishTimeout = 10 * time.Second
	// publishAttemptTimeout bounds one try of a publish within
	// publishTimeout (plus 2 s per MiB of the record): long enough for
	// a stream's replicas to agree on a loaded machine, short enough that a
	// try sent to a server that died is sent again while the client still
	// waits. A try that was only slow is answered as a duplicate.
	publishAttemptTimeout = 4 * time.Second
	// reportWait bounds how long a node waits for its fan-out to reach an
	// event before it answers a report, and how long the owner waits for
	// the answers.
	reportWait = 5 * time.Second
	// recordInlineMax bounds the message record kept in an event's
	// message (every node's fan-out reads it): larger parts go to the
	// object store, so most mail is one publish and large mail does not
	// travel to every node.
	recordInlineMax = 128 << 10
	// catchUpWait bounds waiting for the local index to reach the log's
	// end when an id is not in it yet (read-your-writes across nodes).
	catchUpWait = 5 * time.Second
)
