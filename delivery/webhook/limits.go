package webhook

import "time"

// Every limit of this package, in one place, each with the reason for its value.
// Config fields that a caller may change default to the Default* values; the
// others are fixed here because no caller has needed to change them yet.
const (
	// DefaultTimeout bounds one whole attempt: waiting for a pooled
	// connection, resolving, connecting, the TLS handshake, writing the
	// request and reading the status, headers and the kept part of the body.
	// PROTOCOL.md §6: a webhook attempt succeeds when the endpoint answered
	// 2xx within 15 s.
	DefaultTimeout = 15 * time.Second

	// DefaultMaxConnsPerHost caps concurrent connections to one receiver
	// host, so one slow receiver cannot hold every socket of the process
	// (20,000 files per process on our machines). Attempts beyond it wait up
	// to MaxConnWait for a free connection, then fail and are retried on the
	// schedule.
	DefaultMaxConnsPerHost = 64

	// DefaultMaxResponseBody is the most response-body bytes read from a
	// receiver. A body that fits is read to its end so that the connection
	// can be reused; a longer one is cut off there and its connection
	// closed, so an endless or huge body costs at most this much reading and
	// no buffering.
	DefaultMaxResponseBody = 64 << 10

	// DefaultIdleConnTimeout closes a keep-alive connection idle this long.
	// It is below the 5 s keep-alive timeout of Node.js servers, the
	// shortest common one: POSTs are never retried by the client, so a
	// request written on a connection the receiver is closing at that
	// moment would be a failed attempt.
	DefaultIdleConnTimeout = 4 * time.Second

	// DefaultUserAgent identifies our requests to receivers.
	DefaultUserAgent = "mailwire-webhook/1"

	// maxConnLifetime closes a keep-alive connection after this long even
	// when busy, so a receiver's DNS change (and the guard's check of the new
	// address) takes effect within this time.
	maxConnLifetime = 2 * time.Minute

	// maxResponseHeaderBytes is the read buffer of a connection, which is
	// also the largest response header block accepted. Receivers answer a
	// webhook with a few small headers.
	maxResponseHeaderBytes = 8 << 10

	// requestWriteBuffer is the per-connection write buffer; larger bodies
	// are written through it in pieces.
	requestWriteBuffer = 8 << 10

	// logBodyBytes is how much of a response body Result keeps for the
	// attempt log.
	logBodyBytes = 1 << 10

	// MaxURLLength is the longest webhook URL accepted: what common servers
	// and proxies accept in a request line, and enough for any real receiver.
	MaxURLLength = 2048

	// lookupTimeout bounds the best-effort resolution done by ValidateURL
	// when a user saves a URL, so a slow DNS server cannot hold an API
	// request long. A name that does not resolve in time is accepted: the
	// dialer checks every address again at connect time.
	lookupTimeout = 2 * time.Second

	// defaultDialTimeout bounds resolving and connecting when neither the
	// caller nor the Dialer gave a timeout (fasthttp dials with no timeout
	// when it replaces a connection for a waiting request).
	defaultDialTimeout = DefaultTimeout

	// minAddrDialTimeout is the least time given to each resolved address
	// before the next one is tried, as net.Dialer does for its fallbacks.
	minAddrDialTimeout = 2 * time.Second
)
