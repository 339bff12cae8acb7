package engine_test

import (
	"net/smtp"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// TestSMTPToWebSocket is the whole path: mail over SMTP to an inbox
// address, stored durably, pushed to the subscribed WebSocket.
func TestSMTPToWebSocket(t *testing.T) {
	s := testserver.Start(t, func(c *app.Config) { c.SMTP.Addr = "127.0.0.1:0" })
	acc := s.NewAccount("a")
	in := s.NewInbox(acc.Key, "agent")
	c := dialWS(t, s, acc.Key)
	c.subscribe([]string{in}, nil)

	msg := "From: Customer <customer@example.com>\r\nTo: agent+orders@mail.test\r\n" +
		"Subject: =?ISO-8859-1?Q?Caf=E9?= order\r\nMessage-ID: <order-1@example.com>\r\n\r\nWhere is my parcel?\r\n"
	if err := smtp.SendMail(s.SMTPAddr(), nil, "customer@example.com", []string{"Agent+Orders@MAIL.TEST"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	f := c.read()
	m, _ := f["message"].(map[string]any)
	if f.str("event") != "message.received" || f.str("inbox_id") != in || m == nil ||
		m["subject"] != "Café order" || m["to"] != "agent+Orders@mail.test" ||
		m["rfc_message_id"] != "<order-1@example.com>" || !strings.Contains(m["body_text"].(string), "parcel") {
		t.Fatalf("event %v", f)
	}
	// An unknown recipient is refused at RCPT time.
	err := smtp.SendMail(s.SMTPAddr(), nil, "customer@example.com", []string{"nobody@mail.test"}, []byte(msg))
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("unknown recipient: %v", err)
	}
}
