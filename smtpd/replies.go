package smtpd

import (
	"fmt"

	"github.com/emersion/go-smtp"
)

// The replies mailwire itself gives, with their stable codes (docs/SMTP.md
// explains each). go-smtp answers protocol errors (bad syntax, wrong
// order, SIZE= over the limit, over-long lines) on its own.

func reply(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

func replyStored(firstID string, n int) *smtp.SMTPError {
	if n > 1 {
		return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: stored as %s and %d more", firstID, n-1)
	}
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "OK: stored as %s", firstID)
}

func replyUnknownRecipient(addr string) *smtp.SMTPError {
	return reply(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: no such mailbox here", addr)
}

func replyOtherDomain(addr string) *smtp.SMTPError {
	return reply(550, smtp.EnhancedCode{5, 1, 1}, "<%s>: not a local domain; relaying denied", addr)
}

func replyTooManyRecipients(max int) *smtp.SMTPError {
	return reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients (at most %d per message); send the rest in another transaction", max)
}

// replyTooLarge has go-smtp's wording, so that 552 reads the same whether
// go-smtp or mailwire noticed.
var replyTooLarge = reply(552, smtp.EnhancedCode{5, 3, 4}, "Maximum message size exceeded")

var (
	replyNotMessage      = reply(554, smtp.EnhancedCode{5, 6, 0}, "Not a mail message: the data must start with a header section")
	replyStorage         = reply(451, smtp.EnhancedCode{4, 3, 0}, "Cannot store the message now; nothing was stored, try again later")
	replyUnconfirmed     = reply(451, smtp.EnhancedCode{4, 3, 0}, "Cannot confirm the message was stored; try again later (it may be delivered twice)")
	replyLookup          = reply(451, smtp.EnhancedCode{4, 3, 0}, "Cannot look up the recipient now; try again later")
	replyDataTimeout     = reply(421, smtp.EnhancedCode{4, 4, 2}, "Timeout reading the message; nothing was stored, closing connection")
	replyDataLineTooLong = reply(500, smtp.EnhancedCode{5, 4, 0}, "Line longer than %d bytes; nothing was stored, closing connection", maxLineLength)
	replyShuttingDown    = reply(421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later")
	replyBusy            = reply(451, smtp.EnhancedCode{4, 3, 0}, "Too many messages in flight; nothing was stored, try again later")
	replyDiskFull        = reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage; try again later")
	replyTooManyRefused  = reply(421, smtp.EnhancedCode{4, 7, 0}, "Too many refused recipients, closing connection")
)

// Whole reply lines written before go-smtp takes a connection, or when
// mailwire closes one on its own.
const (
	lineTooManyConnsIP = "421 4.7.0 Too many connections from your address, try again later\r\n"
	lineTooManyConns   = "421 4.3.2 Too many connections, try again later\r\n"
	lineShuttingDown   = "421 4.3.2 Service shutting down, try again later\r\n"
	lineTooManyRefused = "421 4.7.0 Too many refused recipients, closing connection\r\n"
)
