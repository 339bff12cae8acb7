package smtpd

import (
	"time"

	"github.com/mailwire/mailwire/ingest"
)

// Limits of the SMTP listener. Each one that a client can hit has a
// rejected_total reason (metrics.go) and a test.
const (
	// DefaultMaxMessageSize is CONFIG.md's --max-message-size default
	// (ingest's, the one home of the setting). It is advertised as SIZE,
	// refused early on MAIL FROM SIZE= and enforced while DATA is read
	// (go-smtp counts the bytes after dot-unstuffing).
	DefaultMaxMessageSize = ingest.DefaultMaxMessageSize
	// DefaultMaxRecipients bounds one transaction's accepted RCPTs (and
	// so the inboxes one DeliverRaw batch writes). RFC 5321 4.5.3.1.8 asks
	// for 100; senders split on 452, so 50 only costs them a second
	// transaction.
	DefaultMaxRecipients = 50
	// DefaultMaxConnsPerIP keeps one client (IPv6: one /64) from taking
	// every slot, while a relay sending over many parallel sessions from
	// one address (Postfix's smtp-source -s 32) fits.
	DefaultMaxConnsPerIP = 100
	// DefaultMaxConns bounds open connections over all clients: each may
	// hold up to MaxMessageSize in memory while it reads DATA.
	DefaultMaxConns = 1000
	// DefaultCommandTimeout bounds the wait for each command line and the
	// write of each reply; during DATA it is the longest pause between two
	// reads from the socket.
	DefaultCommandTimeout = 60 * time.Second
	// DefaultDataTimeout bounds a whole DATA (or BDAT) phase, however
	// steadily the client trickles bytes.
	DefaultDataTimeout = 5 * time.Minute

	// maxLineLength is go-smtp's default: RFC 5321 4.5.3.1.6's 1000-octet
	// text line, doubled for lenient senders. It applies to command lines
	// and to DATA lines; longer ones end the connection.
	maxLineLength = 2000
	// maxRefusedRecipients is how many RCPTs one connection may have
	// refused with 550 before it is closed (421 4.7.0): a sender with a
	// bad list gets through, one probing for addresses does not. Postfix's
	// smtpd_hard_error_limit is 20 as well.
	maxRefusedRecipients = 20
	// maxLocalPart is RFC 5321 4.5.3.1.1's limit on the part before '@'.
	maxLocalPart = 64
	// ipv6ClientBits is the prefix that counts as one IPv6 client: a host
	// usually owns a whole /64 and can pick any address in it.
	ipv6ClientBits = 64
	// memoryWait is how long a transaction waits for room in the message
	// memory budget before it is answered 451 4.3.0 (try again later).
	memoryWait = 2 * time.Second
	// dataChunk is the step in which a message without a declared SIZE
	// reserves memory while it is read.
	dataChunk = 256 << 10
	// goodbyeWriteTimeout bounds writing a last 421 to a connection we are
	// about to close (over the limits at accept, or at shutdown). A short
	// reply on a fresh or idle socket only fills the kernel buffer, so
	// this is only ever reached by a client that stopped reading.
	goodbyeWriteTimeout = 200 * time.Millisecond
	// replyBufMax bounds the replies a connection holds before sending
	// them (a client pipelining a long group of commands); replyBufKept
	// is the largest buffer kept for the next group.
	replyBufMax  = 16 << 10
	replyBufKept = 4 << 10
)
