package engine_test

import (
	"net/http"
	"net/smtp"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/internal/app"
)

// twoDomains serves mail.test (the default) and agents.test, with SMTP.
func twoDomains(c *app.Config) {
	c.Ingest.OtherDomains = []string{"Agents.Test"}
	c.SMTP.Addr = "127.0.0.1:0"
}

// POST /v1/inboxes takes OpenMail's domain and podId: the domain must be
// one the server serves; podId is stored and shown.
func TestAPIInboxDomainAndPod(t *testing.T) {
	t.Parallel()
	s := startAPI(t, twoDomains)
	a := s.NewAccount("a")

	def := createInbox(t, s, a.Key, map[string]any{"mailboxName": "plain"})
	if def.Address != "plain@mail.test" || def.PodID != nil {
		t.Errorf("default inbox: address %q podId %v; want plain@mail.test, null", def.Address, def.PodID)
	}
	other := createInbox(t, s, a.Key, map[string]any{"mailboxName": "bot", "domain": "AGENTS.test", "podId": "pod_customer-42"})
	if other.Address != "bot@agents.test" || other.PodID == nil || *other.PodID != "pod_customer-42" {
		t.Errorf("inbox on agents.test: address %q podId %v", other.Address, other.PodID)
	}
	var got inbox
	mustGet(t, s, "/v1/inboxes/"+other.ID, a.Key, &got)
	if got.Address != "bot@agents.test" || got.PodID == nil || *got.PodID != "pod_customer-42" {
		t.Errorf("GET after create: %+v", got)
	}
	explicit := createInbox(t, s, a.Key, map[string]any{"mailboxName": "named", "domain": "mail.test"})
	if explicit.Address != "named@mail.test" {
		t.Errorf("the default domain named: address %q", explicit.Address)
	}

	msg := checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "nope", "domain": "elsewhere.test"}, http.StatusUnprocessableEntity, "invalid_value")
	if !strings.Contains(msg, "elsewhere.test") || !strings.Contains(msg, "agents.test") {
		t.Errorf("unserved domain message %q should name it and the served ones", msg)
	}
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "nope", "podId": strings.Repeat("p", 256)}, http.StatusUnprocessableEntity, "invalid_value")
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "nope", "podId": "a\nb"}, http.StatusUnprocessableEntity, "invalid_value")
	// Mailbox names stay unique across domains.
	msg = checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "bot"}, http.StatusConflict, "address_taken")
	if !strings.Contains(msg, "bot@mail.test") {
		t.Errorf("address_taken message %q", msg)
	}
}

// SMTP takes mail for every served domain, each inbox at its own domain
// only; the stored message's To is the address it was sent to.
func TestSMTPServesEveryDomain(t *testing.T) {
	t.Parallel()
	s := startAPI(t, twoDomains)
	a := s.NewAccount("a")
	bot := createInbox(t, s, a.Key, map[string]any{"mailboxName": "bot", "domain": "agents.test"})
	plain := createInbox(t, s, a.Key, map[string]any{"mailboxName": "plain"})

	send := func(rcpt string) error {
		msg := "From: c@example.com\r\nTo: " + rcpt + "\r\nSubject: hi " + rcpt + "\r\n\r\nbody\r\n"
		return smtp.SendMail(s.SMTPAddr(), nil, "c@example.com", []string{rcpt}, []byte(msg))
	}
	if err := send("Bot+x@Agents.Test"); err != nil {
		t.Fatalf("bot@agents.test: %v", err)
	}
	if err := send("plain@mail.test"); err != nil {
		t.Fatalf("plain@mail.test: %v", err)
	}
	for _, wrong := range []string{"bot@mail.test", "plain@agents.test", "bot@elsewhere.test"} {
		if err := send(wrong); err == nil || !strings.Contains(err.Error(), "550") {
			t.Errorf("%s: %v, want 550", wrong, err)
		}
	}
	var l listOf[message]
	mustGet(t, s, "/v1/inboxes/"+bot.ID+"/messages", a.Key, &l)
	if l.Total != 1 || l.Data[0].To != "bot+x@agents.test" {
		t.Errorf("bot's messages: %+v", l)
	}
	mustGet(t, s, "/v1/inboxes/"+plain.ID+"/messages", a.Key, &l)
	if l.Total != 1 || l.Data[0].To != "plain@mail.test" {
		t.Errorf("plain's messages: %+v", l)
	}
	// The JSON inbound form addresses the message to the inbox's own domain.
	inboundJSON(t, s, a.Key, bot.ID, map[string]any{"from": "c@example.com", "subject": "json", "text": "x"})
	mustGet(t, s, "/v1/inboxes/"+bot.ID+"/messages", a.Key, &l)
	if l.Data[0].To != "bot@agents.test" {
		t.Errorf("JSON inbound To %q", l.Data[0].To)
	}
}
