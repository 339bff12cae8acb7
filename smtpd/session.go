package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/store"
)

// session is one go-smtp session: from HELO/EHLO to the end of the
// connection (or to STARTTLS, after which go-smtp starts a new one).
// go-smtp calls its methods from the connection's goroutine, except Data
// for BDAT, which runs on a goroutine of its own while the connection's
// goroutine may still call Reset (RSET) or Logout; mu covers that.
type session struct {
	srv    *Server
	sc     *smtp.Conn
	c      *conn
	remote string
	helo   string
	tls    bool

	mu struct {
		sync.Mutex
		from string
		// rcpts holds one entry per inbox, in the order first named.
		rcpts []ingest.Recipient
		// accepted counts RCPTs answered 250, an inbox named twice
		// included: it is what MaxRecipients bounds.
		accepted int
	}
}

var _ smtp.Session = (*session)(nil)

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if !s.c.beginTx() {
		s.srv.m.reject(reasonShuttingDown)
		s.c.goodbye(lineShuttingDown)
		return replyShuttingDown // to a closed connection: go-smtp's write fails
	}
	s.mu.Lock()
	s.mu.from = from
	s.mu.Unlock()
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	full := s.mu.accepted >= s.srv.cfg.MaxRecipients
	s.mu.Unlock()
	if full {
		s.srv.m.reject(reasonTooManyRecipients)
		return replyTooManyRecipients(s.srv.cfg.MaxRecipients)
	}
	mailbox, addr, verdict := parseRecipient(to, s.srv.cfg.Domain)
	switch verdict {
	case rcptOtherDomain:
		return s.refuse(to, reasonOtherDomain, replyOtherDomain(to))
	case rcptNotMailbox:
		return s.refuse(to, reasonUnknownRecipient, replyUnknownRecipient(to))
	}
	inbox, err := s.srv.db.InboxByMailbox(mailbox)
	if errors.Is(err, store.ErrNotFound) {
		return s.refuse(to, reasonUnknownRecipient, replyUnknownRecipient(to))
	}
	if err != nil {
		s.srv.m.reject(reasonStorage)
		s.srv.log.Error("cannot look up recipient", "remote", s.remote, "error", err)
		return replyLookup
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.accepted++
	for _, r := range s.mu.rcpts {
		if r.Inbox.ID == inbox.ID {
			// One message per inbox: the first address named is kept.
			return nil
		}
	}
	s.mu.rcpts = append(s.mu.rcpts, ingest.Recipient{Inbox: inbox, Address: addr})
	return nil
}

// refuse answers a RCPT 550, or closes the connection when it has been
// refused too often.
func (s *session) refuse(rcpt, reason string, rep *smtp.SMTPError) error {
	if !s.c.refuse() {
		s.srv.m.reject(reasonTooManyRefused)
		s.srv.log.Info("connection closed: too many refused recipients", "remote", s.remote)
		s.c.goodbye(lineTooManyRefused)
		return replyTooManyRefused // to a closed connection: go-smtp's write fails
	}
	s.srv.m.reject(reason)
	s.srv.log.Debug("recipient refused", "remote", s.remote, "rcpt", rcpt, "reason", reason)
	return rep
}

// Data reads the message and stores it. Its result is the reply: 250 only
// once DeliverRaw returned, i.e. once the messages and events are durable.
func (s *session) Data(r io.Reader) error {
	start := time.Now()
	s.c.startData(start.Add(s.srv.cfg.DataTimeout))
	max := s.srv.cfg.MaxMessageSize
	// go-smtp's reader stops at MaxMessageBytes with ErrDataTooLarge; the
	// LimitReader only keeps that promise should the reader change.
	raw, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	s.srv.m.bytes.Add(len(raw))
	if err == nil && len(raw) > max {
		err = smtp.ErrDataTooLarge
	}
	if err != nil {
		return s.readFailed(err, len(raw))
	}
	s.mu.Lock()
	rcpts := slices.Clone(s.mu.rcpts)
	from := s.mu.from
	s.mu.Unlock()
	if len(rcpts) == 0 {
		panic("BUG: DATA without an accepted recipient")
	}

	storeStart := time.Now()
	res, err := s.deliver(rcpts, raw)
	s.srv.m.storeDuration.UpdateDuration(storeStart)
	if err != nil {
		return s.deliverFailed(err, len(raw))
	}
	s.srv.m.accepted.Inc()
	s.srv.log.Info("message stored", "remote", s.remote, "size", len(raw), "inboxes", len(res),
		"message_id", res[0].MessageID, "duration", time.Since(start))
	if s.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		addrs := make([]string, len(rcpts))
		for i, r := range rcpts {
			addrs[i] = r.Address
		}
		s.srv.log.Debug("message envelope", "remote", s.remote, "helo", s.helo, "tls", s.tls,
			"mail_from", from, "rcpt_to", addrs, "message_id", res[0].MessageID)
	}
	// go-smtp writes an *SMTPError's code as is, 250 included: the reply
	// names the stored message, as MTAs' "queued as" replies do.
	return replyStored(res[0].MessageID, len(res))
}

// readFailed maps an error reading DATA/BDAT to the reply.
func (s *session) readFailed(err error, n int) error {
	var reason string
	var rep *smtp.SMTPError
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		// go-smtp reads and drops the rest of the message (bounded by the
		// DATA deadlines), so the connection stays usable.
		reason, rep = reasonTooLarge, replyTooLarge
	case errors.Is(err, smtp.ErrTooLongLine):
		// go-smtp's line reader stays failed: nothing more can be read.
		s.c.closeAfterReply.Store(true)
		reason, rep = reasonLineTooLong, replyDataLineTooLong
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The rest of the message is still coming; conn.broken closes the
		// connection after this reply.
		reason, rep = reasonDataTimeout, replyDataTimeout
	case errors.Is(err, smtp.ErrDataReset):
		// BDAT transfer reset by RSET or a failed chunk; go-smtp replied.
		reason, rep = reasonAborted, reply(451, smtp.EnhancedCode{4, 4, 0}, "Message transfer aborted")
	default:
		// The client went away or the stream failed mid-message.
		s.c.closeAfterReply.Store(true)
		reason, rep = reasonAborted, reply(421, smtp.EnhancedCode{4, 4, 0}, "Connection error while reading the message; closing connection")
	}
	s.srv.m.reject(reason)
	s.srv.log.Info("message refused", "remote", s.remote, "reason", reason, "bytes_read", n, "error", err)
	return rep
}

// deliverFailed maps a DeliverRaw error to the reply. Nothing was
// acknowledged, so every case leaves the sender responsible for the
// message.
func (s *session) deliverFailed(err error, size int) error {
	var p *deliverPanic
	switch {
	case errors.Is(err, ingest.ErrTooLarge):
		s.srv.m.reject(reasonTooLarge)
		s.srv.log.Info("message refused", "remote", s.remote, "reason", reasonTooLarge, "size", size)
		return replyTooLarge
	case errors.Is(err, ingest.ErrInvalid):
		s.srv.m.reject(reasonNotMessage)
		s.srv.log.Info("message refused", "remote", s.remote, "reason", reasonNotMessage, "size", size, "error", err)
		return replyNotMessage
	case errors.As(err, &p):
		s.srv.m.reject(reasonInternal)
		s.srv.log.Error("storing a message panicked; answered 451", "remote", s.remote, "size", size,
			"panic", fmt.Sprint(p.value), "stack", string(p.stack))
		return replyStorage
	default:
		s.srv.m.reject(reasonStorage)
		s.srv.log.Error("cannot store message; answered 451", "remote", s.remote, "size", size, "error", err)
		return replyStorage
	}
}

// deliver calls DeliverRaw, turning a panic into an error.
//
// A panic here is either the store's reaction to a fatal Pebble error (it
// panics by design: mailwire is crash-only) or a bug on this one message,
// e.g. in the MIME parser. smtpd cannot tell them apart, and go-smtp would
// recover either (answering 421 and closing). Re-panicking on a goroutine
// of our own would give every sender a way to crash the server with one
// bad message, so we answer 451 (nothing is acknowledged), log at error
// level and serve on. Making a storage failure end the process is the
// store's job, where it can tell (docs/SMTP.md, "Storage failures").
func (s *session) deliver(rcpts []ingest.Recipient, raw []byte) (res []ingest.Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &deliverPanic{value: v, stack: debug.Stack()}
		}
	}()
	return s.srv.in.DeliverRaw(rcpts, raw)
}

type deliverPanic struct {
	value any
	stack []byte
}

func (p *deliverPanic) Error() string { return fmt.Sprintf("panic: %v", p.value) }

func (s *session) Reset() {
	s.mu.Lock()
	s.mu.from, s.mu.rcpts, s.mu.accepted = "", nil, 0
	s.mu.Unlock()
	s.c.endTx()
}

// Logout is called when the connection closes and at STARTTLS, when
// go-smtp has already put the TLS layer in place.
func (s *session) Logout() error {
	s.mu.Lock()
	s.mu.from, s.mu.rcpts, s.mu.accepted = "", nil, 0
	s.mu.Unlock()
	if t, ok := s.sc.Conn().(*tls.Conn); ok {
		s.c.setTLS(t)
	}
	s.c.clearTx()
	return nil
}
