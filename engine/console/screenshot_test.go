package console_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailwire/mailwire/internal/testserver"
)

// TestConsoleScreenshot refreshes the screenshots in docs/ from a real
// server with sample data (make console-screenshots):
//
//	MAILWIRE_CONSOLE_SCREENSHOTS=$PWD/docs go test -run TestConsoleScreenshot ./engine/console/
//
// It writes console.png (the account view) and console-operator.png.
func TestConsoleScreenshot(t *testing.T) {
	dir := os.Getenv("MAILWIRE_CONSOLE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set MAILWIRE_CONSOLE_SCREENSHOTS to a directory to write the screenshots")
	}
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()

	s := testserver.Start(t, oneAttempt)
	acc := s.NewAccount("Acme Support")
	var support, billing struct{ ID string }
	s.MustJSON("POST", "/v1/inboxes", acc.Key, map[string]string{"mailboxName": "support", "displayName": "Support desk"}, http.StatusCreated, &support)
	s.MustJSON("POST", "/v1/inboxes", acc.Key, map[string]string{"mailboxName": "billing", "webhookUrl": down.URL + "/hooks/mail"}, http.StatusCreated, &billing)
	s.MustJSON("PUT", "/v1/webhook", acc.Key, map[string]string{"url": ok.URL + "/mailwire"}, http.StatusOK, nil)
	other := s.NewAccount("Globex")
	s.NewInbox(other.Key, "agent")

	send := func(inbox string, msg map[string]any) string {
		var out struct{ EventID string }
		s.MustJSON("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, msg, http.StatusAccepted, &out)
		return out.EventID
	}
	// Before the tail runs: delivered by the account webhook, and failed
	// at the billing inbox's endpoint.
	send(support.ID, map[string]any{"from": "Priya Raman <priya@northwind.example>", "subject": "Password reset not arriving", "text": "Hi, I requested a reset twice this morning."})
	failed := send(billing.ID, map[string]any{"from": "ap@contoso.example", "subject": "Invoice INV-2291 overdue", "text": "Please see the attached statement."})
	testserver.WaitFor(t, 10*time.Second, "the billing event fails", func() bool { return s.EventStatus(acc.Key, failed) == "failed" })

	b := newBrowser(t)
	signIn(b, s, acc.Key)
	b.visible(`#inbox-list li[data-inbox-id="`+billing.ID+`"]`, 10*time.Second)
	startTail(b)
	send(support.ID, map[string]any{"from": "Marco Bianchi <marco@fabrikam.example>", "subject": "Re: Shipment 7731 delayed", "text": "Thanks, the new date works for us."})
	html := `<div style="font-family:Georgia,serif;max-width:520px">` +
		`<h2 style="color:#2f5bd3;margin:0 0 8px">Order #4821 has shipped</h2>` +
		`<p>Hello Dana,</p><p>Your order left our warehouse today and should arrive on <b>Thursday</b>.</p>` +
		`<table style="border-collapse:collapse;margin:12px 0"><tr><td style="padding:4px 12px 4px 0">Carrier</td><td>Parcelline</td></tr>` +
		`<tr><td style="padding:4px 12px 4px 0">Tracking</td><td><code>PL-88310-4471</code></td></tr></table>` +
		`<p style="color:#687086">The receipt is attached.</p></div>`
	shown := send(support.ID, map[string]any{
		"from": "Dana Whitfield <dana@customer.example>", "subject": "Order #4821 has shipped",
		"text": "Hello Dana,\n\nYour order left our warehouse today and should arrive on Thursday.\nTracking: PL-88310-4471",
		"html": html,
		"attachments": []map[string]string{{"filename": "receipt-4821.pdf", "contentType": "application/pdf",
			"contentBase64": base64.StdEncoding.EncodeToString([]byte("%PDF-1.4 sample receipt"))}},
	})
	item := `#tail-list li[data-event-id="` + shown + `"]`
	b.visible(item, 5*time.Second)
	b.click(item)
	b.visible("#msg-html", 5*time.Second)
	b.waitJS("the attempt is listed", 5*time.Second, `!!document.querySelector('#attempts tr[data-ok="true"]')`)
	b.waitJS("the headers are shown", 5*time.Second, `!!document.querySelector('#msg-headers table')`)
	b.waitJS("the list has every event", 5*time.Second, `document.querySelectorAll('#events-list li[data-event-id]').length === 4`)
	b.do("scroll to the top", 5*time.Second, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	shot(t, b, filepath.Join(dir, "console.png"))

	b.click("#nav-operator")
	b.do("sign in as operator", 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#input-admin")),
		chromedp.SendKeys(chromedp.CSS("#input-admin"), testserver.AdminToken),
		chromedp.Click(chromedp.CSS("#form-admin button")),
	)
	// Some traffic, so that the rates the server computes are not zero.
	for i := 0; i < 8; i++ {
		send(support.ID, map[string]any{"from": "load@example.com", "subject": testserver.Sprintf("Load %d", i), "text": "."})
	}
	b.waitJS("rates move", 10*time.Second, `!['—', '0'].includes(document.getElementById('op-rate-stored').textContent)`)
	b.visible(`#op-failed tr[data-event-id="`+failed+`"]`, 10*time.Second)
	shot(t, b, filepath.Join(dir, "console-operator.png"))
}

func shot(t *testing.T, b *browser, path string) {
	t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}
