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
	"github.com/mailwire/mailwire/internal/limits"
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
		// reserved is the transaction's share of the message memory
		// budget (from SIZE=, or taken as DATA arrives).
		reserved int64
	}
}

// releaseMemory gives back the transaction's memory reservation.
func (s *session) releaseMemory() {
	s.mu.Lock()
	n := s.mu.reserved
	s.mu.reserved = 0
	s.mu.Unlock()
	if m := s.srv.cfg.Memory; m != nil {
		m.Release(n)
	}
}

var _ smtp.Session = (*session)(nil)

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	// Refused here, before a byte of the message is sent: a full disk
	// (452 4.3.1), or no room in the memory budget for a declared SIZE
	// (451 4.3.0). Senders retry both later.
	if d := s.srv.cfg.Disk; d != nil && !d.Admit("smtp") {
		s.srv.m.reject(reasonDiskFull)
		return replyDiskFull
	}
	if m := s.srv.cfg.Memory; m != nil && opts != nil && opts.Size > 0 && opts.Size <= int64(s.srv.cfg.MaxMessageSize) {
		cost := limits.MessageCost(int(opts.Size) + 1)
		if !m.Acquire(cost, memoryWait, "smtp") {
			s.srv.m.reject(reasonBusy)
			return replyBusy
		}
		s.mu.Lock()
		s.mu.reserved += cost
		s.mu.Unlock()
	}
	if !s.c.beginTx() {
		s.releaseMemory()
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
	mailbox, addr, domain, verdict := s.srv.recipient(to)
	switch verdict {
	case rcptOtherDomain:
		return s.refuse(to, reasonOtherDomain, replyOtherDomain(to))
	case rcptNotMailbox:
		return s.refuse(to, reasonUnknownRecipient, replyUnknownRecipient(to))
	}
	inbox, err := s.srv.db.InboxByMailbox(mailbox)
	if err == nil && s.srv.in.InboxDomain(inbox) != domain {
		// Mailbox names are unique across domains, but an address is the
		// name at the inbox's own domain: agent@other is not agent@ours.
		err = store.ErrNotFound
	}
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
	defer s.releaseMemory() // the message is stored or refused when Data returns
	raw, err := s.readMessage(r)
	s.srv.m.bytes.Add(len(raw))
	if errors.Is(err, errBusy) {
		s.srv.m.reject(reasonBusy)
		s.srv.log.Info("message refused", "remote", s.remote, "reason", reasonBusy, "bytes_read", len(raw))
		return replyBusy // go-smtp reads and drops the rest
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

var errBusy = errors.New("message memory budget full")

// readMessage reads the message, holding it against the memory budget:
// with a SIZE= declared at MAIL FROM the buffer is allocated once (with
// room for the store's batch, ingest's RawBuffer) and its reservation was
// taken then; otherwise the reservation grows in
// dataChunk steps as bytes arrive (waiting up to memoryWait for each), so
// a message is never buffered beyond what the budget allows (errBusy).
func (s *session) readMessage(r io.Reader) ([]byte, error) {
	limit := s.srv.cfg.MaxMessageSize
	mem := s.srv.cfg.Memory
	s.mu.Lock()
	covered := int(s.mu.reserved / limits.IngestCopies) // bytes the reservation covers (SIZE=)
	// The store builds its batch in the message's buffer for one inbox
	// only (ingest.Service.DeliverRaw).
	inPlace := len(s.mu.rcpts) == 1
	s.mu.Unlock()
	// win is how much of buf is read into. A buffer for a declared size
	// is ingest's RawBuffer: its spare capacity beyond win is where the
	// store builds its batch, over the message, instead of beside it.
	win := min(limit+1, max(covered, 64<<10))
	var buf []byte
	if covered > 0 && inPlace {
		buf = s.srv.in.RawBuffer(win)
	} else {
		buf = make([]byte, 0, win)
	}
	if mem == nil {
		covered = limit + 1
	}
	for {
		if len(buf) == win {
			if len(buf) > limit {
				// go-smtp's reader stops at MaxMessageBytes with
				// ErrDataTooLarge; this only keeps that promise should
				// the reader change.
				return buf, smtp.ErrDataTooLarge
			}
			// Double (append grows a large slice by 1.25×: 105 MiB
			// allocated for a 20.5 MiB message against 57 MiB doubling).
			win = min(limit+1, 2*win)
			nb := make([]byte, len(buf), win)
			copy(nb, buf)
			buf = nb
		}
		for mem != nil && win > covered {
			step := max(dataChunk, win-covered)
			cost := limits.MessageCost(step)
			if !mem.Acquire(cost, memoryWait, "smtp") {
				return buf, errBusy
			}
			s.mu.Lock()
			s.mu.reserved += cost
			s.mu.Unlock()
			covered += step
		}
		n, err := r.Read(buf[len(buf):win])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
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
	case errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrNoSpace):
		s.srv.m.reject(reasonDiskFull)
		s.srv.log.Warn("message refused: the disk is full", "remote", s.remote, "size", size, "error", err)
		return replyDiskFull
	case errors.Is(err, store.ErrUnconfirmed):
		s.srv.m.reject(reasonUnavailable)
		s.srv.log.Warn("message refused: the store did not confirm the write (it may have been stored); answered 451", "remote", s.remote, "size", size, "error", err)
		return replyUnconfirmed
	case errors.Is(err, store.ErrUnavailable):
		s.srv.m.reject(reasonUnavailable)
		s.srv.log.Warn("message refused: storage unavailable (the cluster cannot reach NATS); answered 451", "remote", s.remote, "size", size)
		return replyStorage
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
	s.releaseMemory()
	s.c.endTx()
}

// Logout is called when the connection closes and at STARTTLS, when
// go-smtp has already put the TLS layer in place.
func (s *session) Logout() error {
	s.mu.Lock()
	s.mu.from, s.mu.rcpts, s.mu.accepted = "", nil, 0
	s.mu.Unlock()
	s.releaseMemory()
	if t, ok := s.sc.Conn().(*tls.Conn); ok {
		s.c.setTLS(t)
	}
	s.c.clearTx()
	return nil
}
