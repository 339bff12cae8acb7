package engine_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

func TestAPIInboxCreate(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	b := s.NewAccount("b")

	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "Agent", "displayName": "The Agent"})
	if !idRE("inb_").MatchString(in.ID) {
		t.Errorf("id %q is not inb_ + ULID", in.ID)
	}
	if in.Address != "agent@mail.test" || in.MailboxName != "agent" {
		t.Errorf("address %q mailboxName %q, want agent@mail.test, agent (lower-cased)", in.Address, in.MailboxName)
	}
	if in.DisplayName == nil || *in.DisplayName != "The Agent" {
		t.Errorf("displayName %v", in.DisplayName)
	}
	if in.WebhookURL != nil || in.WebhookSecret != "" {
		t.Errorf("no webhook asked, got url %v secret %q", in.WebhookURL, in.WebhookSecret)
	}
	if !apiTimeRE.MatchString(in.CreatedAt) {
		t.Errorf("createdAt %q is not in the API time format", in.CreatedAt)
	}

	// The 3–30 a-z0-9._- rule, at both bounds.
	okNames := []string{"abc", strings.Repeat("x", 30), "a.b", "a_b", "a-b", "0123", "UPPER.case"}
	for _, n := range okNames {
		in := createInbox(t, s, a.Key, map[string]string{"mailboxName": n})
		if in.Address != strings.ToLower(n)+"@mail.test" {
			t.Errorf("mailboxName %q: address %q", n, in.Address)
		}
	}
	nIn, _, _ := totals(t, s, a.Key, "")
	badNames := []string{"", "ab", strings.Repeat("y", 31), "a b", "a+b", "a@b", "ümlaut", "a/b", "dot,comma"}
	for _, n := range badNames {
		checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]string{"mailboxName": n}, http.StatusUnprocessableEntity, "invalid_value")
	}
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{}, http.StatusUnprocessableEntity, "invalid_value")

	// Addresses are global: another account, and another case, conflict.
	msg := checkErr(t, s, "POST", "/v1/inboxes", b.Key, map[string]string{"mailboxName": "AGENT"}, http.StatusConflict, "address_taken")
	if !strings.Contains(msg, "agent@mail.test") {
		t.Errorf("address_taken message %q does not name the address", msg)
	}
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]string{"mailboxName": "agent"}, http.StatusConflict, "address_taken")

	// Bad bodies.
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, []byte(`{"mailboxName":`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	msg = checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "zzz", "color": "red"}, http.StatusBadRequest, "invalid_json")
	if !strings.Contains(msg, "color") {
		t.Errorf("unknown-field message %q does not name the field", msg)
	}
	msg = checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": 42}, http.StatusBadRequest, "invalid_json")
	if !strings.Contains(msg, "mailboxName") {
		t.Errorf("wrong-type message %q does not name the field", msg)
	}
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, []byte(`{"mailboxName":"zzz"} {}`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, []byte(``), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, []byte(`mailboxName=zzz`), http.StatusUnsupportedMediaType, "", "Content-Type", "application/x-www-form-urlencoded")
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "zzz", "displayName": "two\nlines"}, http.StatusUnprocessableEntity, "invalid_value")
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "zzz", "displayName": strings.Repeat("d", 201)}, http.StatusUnprocessableEntity, "invalid_value")

	// Nothing was written by the refused creates.
	if n, _, _ := totals(t, s, a.Key, ""); n != nIn {
		t.Errorf("refused creates changed the inbox total: %d, want %d", n, nIn)
	}
	if n, _, _ := totals(t, s, b.Key, ""); n != 0 {
		t.Errorf("account b has %d inboxes after a refused create", n)
	}
}

func TestAPIInboxCreateWithWebhook(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")

	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "hooked", "webhookUrl": "http://127.0.0.1:9/hook"})
	if in.WebhookURL == nil || *in.WebhookURL != "http://127.0.0.1:9/hook" {
		t.Errorf("webhookUrl %v", in.WebhookURL)
	}
	if !strings.HasPrefix(in.WebhookSecret, "whsec_") || len(in.WebhookSecret) < len("whsec_")+32 {
		t.Errorf("webhookSecret %q is not whsec_ + base64 of 24+ bytes", in.WebhookSecret)
	}
	// Shown once: never on get or list.
	st, body, _ := call(s, "GET", "/v1/inboxes/"+in.ID, a.Key, nil)
	if st != http.StatusOK || strings.Contains(string(body), "whsec_") || strings.Contains(string(body), "webhookSecret") {
		t.Errorf("get shows the secret: %d %s", st, body)
	}
	_, body, _ = call(s, "GET", "/v1/inboxes", a.Key, nil)
	if strings.Contains(string(body), "whsec_") {
		t.Errorf("list shows the secret: %s", body)
	}

	for _, u := range []string{"ftp://example.com/x", "not a url", "http://user:pw@example.com/", "javascript:alert(1)", "/relative"} {
		msg := checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "bad-hook", "webhookUrl": u}, http.StatusUnprocessableEntity, "invalid_value")
		if !strings.Contains(msg, "webhookUrl") {
			t.Errorf("%q: message %q does not name webhookUrl", u, msg)
		}
	}
	if n, _, _ := totals(t, s, a.Key, ""); n != 1 {
		t.Errorf("refused creates wrote inboxes: total %d", n)
	}
}

// TestAPIInboxWebhookPrivateRefused: without --webhook-allow-private, a
// loopback or private URL is refused when it is configured.
func TestAPIInboxWebhookPrivateRefused(t *testing.T) {
	t.Parallel()
	s := startAPI(t, func(c *app.Config) { c.Delivery.Webhook.AllowPrivate = false })
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "inbox"})
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/", "http://169.254.169.254/latest", "http://[::1]/", "http://2130706433/"} {
		checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]any{"mailboxName": "private", "webhookUrl": u}, http.StatusUnprocessableEntity, "invalid_value")
		checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, map[string]any{"webhookUrl": u}, http.StatusUnprocessableEntity, "invalid_value")
		checkErr(t, s, "PUT", "/v1/webhook", a.Key, map[string]any{"url": u}, http.StatusUnprocessableEntity, "invalid_value")
	}
	if n, _, _ := totals(t, s, a.Key, ""); n != 1 {
		t.Errorf("inbox total %d, want 1", n)
	}
	var got inbox
	mustGet(t, s, "/v1/inboxes/"+in.ID, a.Key, &got)
	if got.WebhookURL != nil {
		t.Errorf("refused PATCH set webhookUrl %q", *got.WebhookURL)
	}
	checkErr(t, s, "GET", "/v1/webhook", a.Key, nil, http.StatusNotFound, "not_found")
}

func TestAPIInboxListPagination(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	const n = 105
	var want []string
	for i := range n {
		want = append(want, s.NewInbox(a.Key, testserver.Sprintf("box%03d", i)))
	}
	var l listOf[inbox]
	mustGet(t, s, "/v1/inboxes", a.Key, &l)
	if l.Total != n || len(l.Data) != 50 {
		t.Fatalf("default page: total %d, %d items; want %d, 50", l.Total, len(l.Data), n)
	}
	for i, in := range l.Data {
		if in.ID != want[i] {
			t.Fatalf("item %d is %s, want %s (creation order)", i, in.ID, want[i])
		}
	}
	mustGet(t, s, "/v1/inboxes?limit=100", a.Key, &l)
	if len(l.Data) != 100 || l.Total != n {
		t.Fatalf("limit=100: %d items, total %d", len(l.Data), l.Total)
	}
	mustGet(t, s, "/v1/inboxes?limit=10&offset=100", a.Key, &l)
	if len(l.Data) != 5 || l.Data[0].ID != want[100] || l.Total != n {
		t.Fatalf("limit=10&offset=100: %d items, total %d", len(l.Data), l.Total)
	}
	mustGet(t, s, "/v1/inboxes?offset=500", a.Key, &l)
	if len(l.Data) != 0 || l.Total != n {
		t.Fatalf("offset past the end: %d items, total %d", len(l.Data), l.Total)
	}
	if _, b, _ := call(s, "GET", "/v1/inboxes?offset=500", a.Key, nil); !strings.Contains(string(b), `"data":[]`) {
		t.Errorf("an empty page must be data:[], got %s", b)
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=x", "limit=1.5", "offset=-1", "offset=x", "limit=-99999999999999999999"} {
		st, b, _ := call(s, "GET", "/v1/inboxes?"+q, a.Key, nil)
		wantError(t, q, st, b, http.StatusBadRequest, "bad_request")
	}
	// A limit above 100 is clamped, not refused (as OpenMail); empty
	// means absent.
	for q, wantLen := range map[string]int{"limit=": 50, "limit=101": 100, "limit=1000": 100, "limit=99999999999999999999": 100} {
		mustGet(t, s, "/v1/inboxes?"+q, a.Key, &l)
		if len(l.Data) != wantLen || l.Total != n {
			t.Errorf("%s: %d items, total %d; want %d, %d", q, len(l.Data), l.Total, wantLen, n)
		}
	}
}

func TestAPIInboxGetPatch(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "patchme"})

	var got inbox
	mustGet(t, s, "/v1/inboxes/"+in.ID, a.Key, &got)
	if got.ID != in.ID || got.Address != "patchme@mail.test" || got.DisplayName != nil || got.WebhookURL != nil || got.CreatedAt != in.CreatedAt {
		t.Fatalf("get: %+v, created %+v", got, in)
	}

	patch := func(body string) inbox {
		t.Helper()
		var out inbox
		s.MustJSON("PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(body), http.StatusOK, &out)
		return out
	}
	p := patch(`{"displayName":"Support"}`)
	if p.DisplayName == nil || *p.DisplayName != "Support" || p.WebhookSecret != "" {
		t.Fatalf("patch displayName: %+v", p)
	}
	// A URL first set: the secret is shown once.
	p = patch(`{"webhookUrl":"http://127.0.0.1:9/one"}`)
	if p.WebhookURL == nil || *p.WebhookURL != "http://127.0.0.1:9/one" || !strings.HasPrefix(p.WebhookSecret, "whsec_") {
		t.Fatalf("patch webhookUrl: %+v", p)
	}
	if p.DisplayName == nil || *p.DisplayName != "Support" {
		t.Fatalf("patching webhookUrl changed displayName: %+v", p)
	}
	// Set again (changed): no secret.
	p = patch(`{"webhookUrl":"http://127.0.0.1:9/two"}`)
	if p.WebhookURL == nil || *p.WebhookURL != "http://127.0.0.1:9/two" || p.WebhookSecret != "" {
		t.Fatalf("patch webhookUrl again: %+v", p)
	}
	// Empty patch changes nothing.
	p = patch(`{}`)
	if p.WebhookURL == nil || p.DisplayName == nil {
		t.Fatalf("empty patch: %+v", p)
	}
	// null clears.
	p = patch(`{"webhookUrl":null,"displayName":null}`)
	if p.WebhookURL != nil || p.DisplayName != nil || p.WebhookSecret != "" {
		t.Fatalf("patch null: %+v", p)
	}
	checkErr(t, s, "POST", "/v1/inboxes/"+in.ID+"/webhook/rotate-secret", a.Key, nil, http.StatusBadRequest, "no_webhook_url")
	// Set after clearing: a new secret is shown.
	p = patch(`{"webhookUrl":"http://127.0.0.1:9/three"}`)
	if !strings.HasPrefix(p.WebhookSecret, "whsec_") {
		t.Fatalf("patch after clear: no secret: %+v", p)
	}

	// Refused patches change nothing.
	before := patch(`{}`)
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{"mailboxName":"other"}`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{"color":"red"}`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	msg := checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{"displayName":7}`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	if !strings.Contains(msg, "displayName") {
		t.Errorf("wrong-type message %q does not name the field", msg)
	}
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{"webhookUrl":true}`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{"webhookUrl":"gopher://x"}`), http.StatusUnprocessableEntity, "invalid_value", "Content-Type", "application/json")
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{"displayName":"a\r\nb"}`), http.StatusUnprocessableEntity, "invalid_value", "Content-Type", "application/json")
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`[]`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	checkErr(t, s, "PATCH", "/v1/inboxes/"+in.ID, a.Key, []byte(`{`), http.StatusBadRequest, "invalid_json", "Content-Type", "application/json")
	after := patch(`{}`)
	if b1, b2 := mustJSONText(before), mustJSONText(after); b1 != b2 {
		t.Fatalf("refused patches changed the inbox: %s -> %s", b1, b2)
	}
	checkErr(t, s, "PATCH", "/v1/inboxes/inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P", a.Key, map[string]any{"displayName": "x"}, http.StatusNotFound, "not_found")
}

func TestAPIInboxDelete(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	keep := createInbox(t, s, a.Key, map[string]any{"mailboxName": "keep"})
	gone := createInbox(t, s, a.Key, map[string]any{"mailboxName": "gone"})
	keptMsg, _ := inboundJSON(t, s, a.Key, keep.ID, map[string]any{"from": "x@example.com", "subject": "kept", "text": "k"})
	goneMsg, _ := inboundJSON(t, s, a.Key, gone.ID, map[string]any{"from": "x@example.com", "subject": "gone", "text": "g",
		"attachments": []map[string]string{{"filename": "a.txt", "contentType": "text/plain", "contentBase64": "aGVsbG8="}}})

	st, body, _ := call(s, "DELETE", "/v1/inboxes/"+gone.ID, a.Key, nil)
	if st != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("delete: %d %q", st, body)
	}
	checkErr(t, s, "GET", "/v1/inboxes/"+gone.ID, a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "DELETE", "/v1/inboxes/"+gone.ID, a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/inboxes/"+gone.ID+"/messages", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/messages/"+goneMsg.MessageID, a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/messages/"+goneMsg.MessageID+"/raw", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/attachments/"+goneMsg.MessageID+"/a.txt", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/events/"+goneMsg.EventID, a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "POST", "/v1/events/"+goneMsg.EventID+"/redeliver", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "POST", "/v1/inboxes/"+gone.ID+"/inbound", a.Key, map[string]any{"from": "x@example.com"}, http.StatusNotFound, "not_found")

	var evs listOf[eventSummary]
	mustGet(t, s, "/v1/events", a.Key, &evs)
	if evs.Total != 1 || len(evs.Data) != 1 || evs.Data[0].ID != keptMsg.EventID {
		t.Fatalf("events after delete: %+v", evs)
	}
	var ins listOf[inbox]
	mustGet(t, s, "/v1/inboxes", a.Key, &ins)
	if ins.Total != 1 || ins.Data[0].ID != keep.ID {
		t.Fatalf("inboxes after delete: %+v", ins)
	}
	// The address is free again.
	again := createInbox(t, s, a.Key, map[string]any{"mailboxName": "gone"})
	var ms listOf[message]
	mustGet(t, s, "/v1/inboxes/"+again.ID+"/messages", a.Key, &ms)
	if ms.Total != 0 {
		t.Fatalf("a new inbox with a deleted one's name has %d messages", ms.Total)
	}
	// The kept inbox is untouched.
	mustGet(t, s, "/v1/inboxes/"+keep.ID+"/messages", a.Key, &ms)
	if ms.Total != 1 || ms.Data[0].ID != keptMsg.MessageID {
		t.Fatalf("kept inbox messages: %+v", ms)
	}
}

func TestAPIInboxWebhookSecretAndTest(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	okHook := newHookReceiver(t, http.StatusNoContent)
	badHook := newHookReceiver(t, http.StatusInternalServerError)

	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "hooked", "webhookUrl": okHook.URL + "/hook"})
	okHook.setSecret(in.WebhookSecret)

	var res struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	}
	s.MustJSON("POST", "/v1/inboxes/"+in.ID+"/webhook/test", a.Key, nil, http.StatusOK, &res)
	if !res.OK || res.Message == "" {
		t.Fatalf("test webhook: %+v", res)
	}
	reqs := okHook.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if !r.SigOK || !r.StdSigOK {
		t.Fatalf("signature check failed: %s (headers %v)", r.VerifyErr, r.Header)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var payload map[string]any
	mustDecode(t, "test event", r.Body, &payload)
	if payload["event_id"] != r.Header.Get("X-Event-Id") || payload["inbox_id"] != in.ID {
		t.Errorf("test event %s, X-Event-Id %q", r.Body, r.Header.Get("X-Event-Id"))
	}
	if ts, _ := payload["delivered_at"].(string); !apiTimeRE.MatchString(ts) {
		t.Errorf("delivered_at %q", ts)
	}

	// Rotation: a new secret; the old one no longer verifies.
	var rot struct {
		WebhookSecret string `json:"webhookSecret"`
	}
	s.MustJSON("POST", "/v1/inboxes/"+in.ID+"/webhook/rotate-secret", a.Key, nil, http.StatusOK, &rot)
	if !strings.HasPrefix(rot.WebhookSecret, "whsec_") || rot.WebhookSecret == in.WebhookSecret {
		t.Fatalf("rotated secret %q (old %q)", rot.WebhookSecret, in.WebhookSecret)
	}
	s.MustJSON("POST", "/v1/inboxes/"+in.ID+"/webhook/test", a.Key, nil, http.StatusOK, &res)
	reqs = okHook.requests()
	if last := reqs[len(reqs)-1]; last.SigOK {
		t.Fatalf("the old secret still verifies after rotation")
	}
	okHook.setSecret(rot.WebhookSecret)
	s.MustJSON("POST", "/v1/inboxes/"+in.ID+"/webhook/test", a.Key, nil, http.StatusOK, &res)
	reqs = okHook.requests()
	if last := reqs[len(reqs)-1]; !last.SigOK || !last.StdSigOK {
		t.Fatalf("the rotated secret does not verify: %s", last.VerifyErr)
	}

	// A receiver answering 500: 502 webhook_failed.
	s.MustJSON("PATCH", "/v1/inboxes/"+in.ID, a.Key, map[string]any{"webhookUrl": badHook.URL + "/hook"}, http.StatusOK, nil)
	msg := checkErr(t, s, "POST", "/v1/inboxes/"+in.ID+"/webhook/test", a.Key, nil, http.StatusBadGateway, "webhook_failed")
	if !strings.Contains(msg, "500") {
		t.Errorf("webhook_failed message %q does not give the status", msg)
	}
	if len(badHook.requests()) != 1 {
		t.Errorf("500 receiver got %d requests", len(badHook.requests()))
	}

	// No URL (inbox or account): 400 no_webhook_url (as OpenMail).
	bare := createInbox(t, s, a.Key, map[string]any{"mailboxName": "bare"})
	checkErr(t, s, "POST", "/v1/inboxes/"+bare.ID+"/webhook/test", a.Key, nil, http.StatusBadRequest, "no_webhook_url")
	checkErr(t, s, "POST", "/v1/inboxes/"+bare.ID+"/webhook/rotate-secret", a.Key, nil, http.StatusBadRequest, "no_webhook_url")
	// With an account webhook, the inbox without its own URL tests that one.
	var put struct{ URL, Secret string }
	s.MustJSON("PUT", "/v1/webhook", a.Key, map[string]any{"url": okHook.URL + "/account"}, http.StatusOK, &put)
	okHook.setSecret(put.Secret)
	s.MustJSON("POST", "/v1/inboxes/"+bare.ID+"/webhook/test", a.Key, nil, http.StatusOK, &res)
	reqs = okHook.requests()
	if last := reqs[len(reqs)-1]; !last.SigOK || !last.StdSigOK {
		t.Fatalf("account webhook test not signed with the account secret: %s", last.VerifyErr)
	}
	checkErr(t, s, "POST", "/v1/inboxes/inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P/webhook/test", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "POST", "/v1/inboxes/inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P/webhook/rotate-secret", a.Key, nil, http.StatusNotFound, "not_found")
}

func TestAPIAccountWebhook(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")

	checkErr(t, s, "GET", "/v1/webhook", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "POST", "/v1/webhook/rotate-secret", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "DELETE", "/v1/webhook", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "PUT", "/v1/webhook", a.Key, map[string]any{}, http.StatusUnprocessableEntity, "invalid_value")
	checkErr(t, s, "PUT", "/v1/webhook", a.Key, map[string]any{"url": nil}, http.StatusUnprocessableEntity, "invalid_value")
	checkErr(t, s, "PUT", "/v1/webhook", a.Key, map[string]any{"url": "ftp://x/"}, http.StatusUnprocessableEntity, "invalid_value")
	checkErr(t, s, "PUT", "/v1/webhook", a.Key, map[string]any{"url": 5}, http.StatusBadRequest, "invalid_json")
	checkErr(t, s, "PUT", "/v1/webhook", a.Key, map[string]any{"url": "http://127.0.0.1:9/", "secret": "mine"}, http.StatusBadRequest, "invalid_json")
	checkErr(t, s, "GET", "/v1/webhook", a.Key, nil, http.StatusNotFound, "not_found")

	var first map[string]string
	s.MustJSON("PUT", "/v1/webhook", a.Key, map[string]any{"url": "http://127.0.0.1:9/a"}, http.StatusOK, &first)
	if first["url"] != "http://127.0.0.1:9/a" || !strings.HasPrefix(first["secret"], "whsec_") {
		t.Fatalf("first PUT: %v", first)
	}
	var again map[string]string
	s.MustJSON("PUT", "/v1/webhook", a.Key, map[string]any{"url": "http://127.0.0.1:9/b"}, http.StatusOK, &again)
	if again["url"] != "http://127.0.0.1:9/b" {
		t.Fatalf("second PUT: %v", again)
	}
	if _, shown := again["secret"]; shown {
		t.Fatalf("second PUT shows the secret again: %v", again)
	}
	var got map[string]any
	mustGet(t, s, "/v1/webhook", a.Key, &got)
	if got["url"] != "http://127.0.0.1:9/b" {
		t.Fatalf("GET: %v", got)
	}
	if _, shown := got["secret"]; shown {
		t.Fatalf("GET shows the secret: %v", got)
	}
	var rot map[string]string
	s.MustJSON("POST", "/v1/webhook/rotate-secret", a.Key, nil, http.StatusOK, &rot)
	if !strings.HasPrefix(rot["secret"], "whsec_") || rot["secret"] == first["secret"] {
		t.Fatalf("rotate: %v", rot)
	}

	// Another account does not see it.
	b := s.NewAccount("b")
	checkErr(t, s, "GET", "/v1/webhook", b.Key, nil, http.StatusNotFound, "not_found")

	st, body, _ := call(s, "DELETE", "/v1/webhook", a.Key, nil)
	if st != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	checkErr(t, s, "GET", "/v1/webhook", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "DELETE", "/v1/webhook", a.Key, nil, http.StatusNotFound, "not_found")
	// Set again after delete: a new secret is shown.
	var third map[string]string
	s.MustJSON("PUT", "/v1/webhook", a.Key, map[string]any{"url": "http://127.0.0.1:9/c"}, http.StatusOK, &third)
	if !strings.HasPrefix(third["secret"], "whsec_") {
		t.Fatalf("PUT after DELETE shows no secret: %v", third)
	}
}

// TestAPIWebhookDelivery: an event of an inbox without a WebSocket goes
// to the inbox's webhook, signed, and is recorded as delivered via
// webhook.
func TestAPIWebhookDelivery(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	hook := newHookReceiver(t, http.StatusOK)
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "hooked", "webhookUrl": hook.URL + "/in"})
	hook.setSecret(in.WebhookSecret)
	r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "hi", "text": "t"})
	testserver.WaitFor(t, 10*time.Second, "delivered via webhook", func() bool { return s.EventStatus(a.Key, r.EventID) == "delivered" })
	var ev eventView
	mustGet(t, s, "/v1/events/"+r.EventID, a.Key, &ev)
	if ev.DeliveredVia == nil || *ev.DeliveredVia != "webhook" || len(ev.Attempts) != 1 || ev.Attempts[0].Channel != "webhook" ||
		!ev.Attempts[0].OK || ev.Attempts[0].HTTPStatus != 200 {
		t.Fatalf("event after webhook delivery: %+v", ev)
	}
	reqs := hook.requests()
	if len(reqs) != 1 || !reqs[0].SigOK || !reqs[0].StdSigOK || reqs[0].Header.Get("X-Event-Id") != r.EventID {
		t.Fatalf("webhook requests: %+v", reqs)
	}
	var p map[string]any
	mustDecode(t, "webhook body", reqs[0].Body, &p)
	if p["event_id"] != r.EventID || p["event"] != "message.received" {
		t.Fatalf("webhook body %s", reqs[0].Body)
	}
}
