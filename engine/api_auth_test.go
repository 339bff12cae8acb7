package engine_test

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

func TestAPIAuth(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	unknown := "om_" + strings.Repeat("ab", 24)

	routes := []struct{ method, path string }{
		{"POST", "/v1/inboxes"}, {"GET", "/v1/inboxes"}, {"GET", "/v1/inboxes/" + in},
		{"PATCH", "/v1/inboxes/" + in}, {"DELETE", "/v1/inboxes/" + in},
		{"POST", "/v1/inboxes/" + in + "/webhook/rotate-secret"}, {"POST", "/v1/inboxes/" + in + "/webhook/test"},
		{"POST", "/v1/inboxes/" + in + "/inbound"}, {"GET", "/v1/inboxes/" + in + "/messages"},
		{"GET", "/v1/webhook"}, {"PUT", "/v1/webhook"}, {"DELETE", "/v1/webhook"}, {"POST", "/v1/webhook/rotate-secret"},
		{"GET", "/v1/messages/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P"}, {"GET", "/v1/messages/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P/raw"},
		{"GET", "/v1/attachments/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P/a.pdf"},
		{"GET", "/v1/events"}, {"GET", "/v1/events/evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P"},
		{"POST", "/v1/events/evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P/redeliver"},
	}
	auths := map[string][]string{
		"no header":        nil,
		"empty bearer":     {"Authorization", "Bearer "},
		"malformed key":    {"Authorization", "Bearer not-a-key"},
		"short key":        {"Authorization", "Bearer om_abc"},
		"upper-case key":   {"Authorization", "Bearer " + strings.ToUpper(a.Key)},
		"unknown key":      {"Authorization", "Bearer " + unknown},
		"basic scheme":     {"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(a.Key+":"))},
		"admin token":      {"Authorization", "Bearer " + testserver.AdminToken},
		"key without type": {"Authorization", a.Key},
	}
	for name, hdr := range auths {
		for _, r := range routes {
			st, body, h := call(s, r.method, r.path, "", map[string]any{}, hdr...)
			msg := wantError(t, name+": "+r.method+" "+r.path, st, body, http.StatusUnauthorized, "unauthorized")
			if !strings.Contains(msg, "key") {
				t.Errorf("%s: 401 message %q does not say what is missing", name, msg)
			}
			if h.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: %s %s: 401 without WWW-Authenticate", name, r.method, r.path)
			}
		}
	}
	// The key in the query string is for /v1/ws only.
	checkErr(t, s, "GET", "/v1/inboxes?token="+a.Key, "", nil, http.StatusUnauthorized, "unauthorized")
	// The scheme is case-insensitive.
	if st, b, _ := call(s, "GET", "/v1/inboxes", "", nil, "Authorization", "bearer "+a.Key); st != http.StatusOK {
		t.Errorf("lower-case scheme: %d %s", st, b)
	}
	// Nothing was created by the refused requests.
	if n, _, _ := totals(t, s, a.Key, ""); n != 1 {
		t.Errorf("inbox total %d after unauthorized requests", n)
	}
}

// TestAPIAuthRevokedKey: a revoked key is refused at once; the account's
// other keys keep working.
func TestAPIAuthRevokedKey(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	var k2 struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts/"+a.ID+"/api-keys", testserver.AdminToken, nil, http.StatusCreated, &k2)
	mustGet(t, s, "/v1/inboxes/"+in, k2.APIKey, &inbox{})

	st, _, _ := call(s, "DELETE", "/admin/v1/api-keys/"+k2.ID, testserver.AdminToken, nil)
	if st != http.StatusNoContent {
		t.Fatalf("revoke: %d", st)
	}
	checkErr(t, s, "GET", "/v1/inboxes/"+in, k2.APIKey, nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "POST", "/v1/inboxes/"+in+"/inbound", k2.APIKey, map[string]any{"from": "x@example.com"}, http.StatusUnauthorized, "unauthorized")
	mustGet(t, s, "/v1/inboxes/"+in, a.Key, &inbox{})
}

// TestAPIAccountIsolation: account B gets 404 for every one of account
// A's ids on every route, changes nothing of A's, and the lists of each
// show only its own items.
func TestAPIAccountIsolation(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	b := s.NewAccount("b")
	ain := createInbox(t, s, a.Key, map[string]any{"mailboxName": "alpha", "webhookUrl": "http://127.0.0.1:9/a"})
	amsg, _ := inboundJSON(t, s, a.Key, ain.ID, map[string]any{"from": "c@example.com", "subject": "secret", "text": "for a only",
		"attachments": []map[string]string{{"filename": "a.txt", "contentType": "text/plain", "contentBase64": "YWFh"}}})
	bin := createInbox(t, s, b.Key, map[string]any{"mailboxName": "beta"})
	bmsg, _ := inboundJSON(t, s, b.Key, bin.ID, map[string]any{"from": "c@example.com", "subject": "b's", "text": "for b"})

	foreign := []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/inboxes/" + ain.ID, nil},
		{"PATCH", "/v1/inboxes/" + ain.ID, map[string]any{"displayName": "pwned"}},
		{"PATCH", "/v1/inboxes/" + ain.ID, map[string]any{"webhookUrl": nil}},
		{"POST", "/v1/inboxes/" + ain.ID + "/webhook/rotate-secret", nil},
		{"POST", "/v1/inboxes/" + ain.ID + "/webhook/test", nil},
		{"POST", "/v1/inboxes/" + ain.ID + "/inbound", map[string]any{"from": "evil@example.com", "subject": "inject"}},
		{"POST", "/v1/inboxes/" + ain.ID + "/inbound", []byte("From: evil@example.com\r\n\r\nraw\r\n")},
		{"GET", "/v1/inboxes/" + ain.ID + "/messages", nil},
		{"GET", "/v1/messages/" + amsg.MessageID, nil},
		{"GET", "/v1/messages/" + amsg.MessageID + "/raw", nil},
		{"GET", "/v1/attachments/" + amsg.MessageID + "/a.txt", nil},
		{"GET", "/v1/events/" + amsg.EventID, nil},
		{"POST", "/v1/events/" + amsg.EventID + "/redeliver", nil},
		{"DELETE", "/v1/inboxes/" + ain.ID, nil},
	}
	for _, r := range foreign {
		hdr := []string(nil)
		if _, raw := r.body.([]byte); raw {
			hdr = []string{"Content-Type", "message/rfc822"}
		}
		st, body, _ := call(s, r.method, r.path, b.Key, r.body, hdr...)
		msg := wantError(t, "B: "+r.method+" "+r.path, st, body, http.StatusNotFound, "not_found")
		if strings.Contains(msg, "alpha") || strings.Contains(msg, "secret") {
			t.Errorf("404 message leaks A's data: %q", msg)
		}
	}

	// A's things are unchanged.
	var got inbox
	mustGet(t, s, "/v1/inboxes/"+ain.ID, a.Key, &got)
	if got.DisplayName != nil || got.WebhookURL == nil {
		t.Fatalf("B changed A's inbox: %+v", got)
	}
	if _, m, e := totals(t, s, a.Key, ain.ID); m != 1 || e != 1 {
		t.Fatalf("A has %d messages, %d events; want 1, 1", m, e)
	}
	var ev eventView
	mustGet(t, s, "/v1/events/"+amsg.EventID, a.Key, &ev)

	// Lists show only the caller's items.
	for _, c := range []struct {
		key, inbox, msg, evt, otherInbox, otherEvt string
	}{{a.Key, ain.ID, amsg.MessageID, amsg.EventID, bin.ID, bmsg.EventID}, {b.Key, bin.ID, bmsg.MessageID, bmsg.EventID, ain.ID, amsg.EventID}} {
		var li listOf[inbox]
		mustGet(t, s, "/v1/inboxes", c.key, &li)
		if li.Total != 1 || li.Data[0].ID != c.inbox {
			t.Errorf("inbox list %+v", li)
		}
		var le listOf[eventSummary]
		mustGet(t, s, "/v1/events", c.key, &le)
		if le.Total != 1 || le.Data[0].ID != c.evt {
			t.Errorf("event list %+v", le)
		}
		mustGet(t, s, "/v1/events?inboxId="+c.otherInbox, c.key, &le)
		if le.Total != 0 || len(le.Data) != 0 {
			t.Errorf("filtering by another account's inbox shows %+v", le)
		}
	}
}

// TestAPIBadIDs: a malformed id (or an id of the wrong kind) is a 400
// that says what was expected, on every route.
func TestAPIBadIDs(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	evt := s.Inbound(a.Key, in, "x")
	bad := []string{"x", "inb_", "inb_123", "inb_01JD7Z8Q7W3M1X5K2B9N4C6V8", "inb_01JD7Z8Q7W3M1X5K2B9N4C6V8PX", "inb_01JD7Z8Q7W3M1X5K2B9N4C6V8U",
		"msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P", "%00", "inb_01JD7Z8Q7W3M1X5K2B9N4C6V8%21"}
	for _, id := range bad {
		for _, r := range []struct{ method, path string }{
			{"GET", "/v1/inboxes/" + id}, {"PATCH", "/v1/inboxes/" + id}, {"DELETE", "/v1/inboxes/" + id},
			{"POST", "/v1/inboxes/" + id + "/webhook/rotate-secret"}, {"POST", "/v1/inboxes/" + id + "/webhook/test"},
			{"POST", "/v1/inboxes/" + id + "/inbound"}, {"GET", "/v1/inboxes/" + id + "/messages"},
		} {
			msg := checkErr(t, s, r.method, r.path, a.Key, map[string]any{}, http.StatusBadRequest, "bad_request")
			if !strings.Contains(msg, "inb_") {
				t.Errorf("%s %s: message %q does not say an inb_ id is expected", r.method, r.path, msg)
			}
		}
	}
	for _, id := range []string{"x", "msg_1", evt, in} {
		checkErr(t, s, "GET", "/v1/messages/"+id, a.Key, nil, http.StatusBadRequest, "bad_request")
		checkErr(t, s, "GET", "/v1/messages/"+id+"/raw", a.Key, nil, http.StatusBadRequest, "bad_request")
		checkErr(t, s, "GET", "/v1/attachments/"+id+"/a.txt", a.Key, nil, http.StatusBadRequest, "bad_request")
	}
	for _, id := range []string{"x", "evt_1", in} {
		checkErr(t, s, "GET", "/v1/events/"+id, a.Key, nil, http.StatusBadRequest, "bad_request")
		checkErr(t, s, "POST", "/v1/events/"+id+"/redeliver", a.Key, nil, http.StatusBadRequest, "bad_request")
	}
	checkErr(t, s, "POST", "/admin/v1/accounts/x/api-keys", testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "DELETE", "/admin/v1/api-keys/"+a.ID, testserver.AdminToken, nil, http.StatusBadRequest, "bad_request")
	// A very long id is quoted shortly.
	long := strings.Repeat("z", 5000)
	msg := checkErr(t, s, "GET", "/v1/inboxes/"+long, a.Key, nil, http.StatusBadRequest, "bad_request")
	if len(msg) > 300 {
		t.Errorf("message for a 5000-byte id is %d bytes long", len(msg))
	}
}

func TestAPIAdmin(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	tok := testserver.AdminToken

	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Bearer " + tok + "x"}, {"Authorization", "Basic " + tok}} {
		for _, r := range []struct{ method, path string }{
			{"POST", "/admin/v1/accounts"}, {"GET", "/admin/v1/accounts"},
			{"POST", "/admin/v1/accounts/acc_01JD7Z8Q7W3M1X5K2B9N4C6V8P/api-keys"},
			{"DELETE", "/admin/v1/api-keys/key_01JD7Z8Q7W3M1X5K2B9N4C6V8P"},
		} {
			st, b, _ := call(s, r.method, r.path, "", map[string]string{"name": "x"}, h...)
			wantError(t, r.method+" "+r.path, st, b, http.StatusUnauthorized, "unauthorized")
		}
	}
	var accs listOf[map[string]any]
	s.MustJSON("GET", "/admin/v1/accounts", tok, nil, http.StatusOK, &accs)
	if accs.Total != 0 {
		t.Fatalf("unauthorized requests created accounts: %+v", accs)
	}

	var acc struct{ ID, Name, APIKey, CreatedAt string }
	s.MustJSON("POST", "/admin/v1/accounts", tok, map[string]string{"name": "Acme"}, http.StatusCreated, &acc)
	if !idRE("acc_").MatchString(acc.ID) || acc.Name != "Acme" || !regexp.MustCompile(`^om_[0-9a-f]{48}$`).MatchString(acc.APIKey) || !apiTimeRE.MatchString(acc.CreatedAt) {
		t.Fatalf("created account %+v", acc)
	}
	mustGet(t, s, "/v1/inboxes", acc.APIKey, &listOf[inbox]{})
	for _, body := range []any{map[string]string{}, map[string]string{"name": "  "}, map[string]string{"name": "a\nb"}, map[string]string{"name": strings.Repeat("n", 201)}} {
		checkErr(t, s, "POST", "/admin/v1/accounts", tok, body, http.StatusUnprocessableEntity, "invalid_value")
	}
	checkErr(t, s, "POST", "/admin/v1/accounts", tok, map[string]any{"name": "x", "plan": "pro"}, http.StatusBadRequest, "invalid_json")
	for i := range 4 {
		s.MustJSON("POST", "/admin/v1/accounts", tok, map[string]string{"name": testserver.Sprintf("acc%d", i)}, http.StatusCreated, nil)
	}
	_, body, _ := call(s, "GET", "/admin/v1/accounts?limit=2&offset=1", tok, nil)
	if strings.Contains(string(body), "om_") || strings.Contains(string(body), "apiKey") {
		t.Errorf("account list shows keys: %s", body)
	}
	mustDecode(t, "accounts", body, &accs)
	if accs.Total != 5 || len(accs.Data) != 2 || accs.Data[0]["name"] != "acc0" {
		t.Fatalf("account list: %+v", accs)
	}
	mustGet(t, s, "/admin/v1/accounts?limit=500", tok, &accs) // clamped to 100, as every list
	if accs.Total != 5 || len(accs.Data) != 5 {
		t.Fatalf("limit=500: %+v", accs)
	}
	checkErr(t, s, "GET", "/admin/v1/accounts?limit=0", tok, nil, http.StatusBadRequest, "bad_request")

	// Keys: a new key works for the same account.
	in := s.NewInbox(acc.APIKey, "acme")
	var key struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts/"+acc.ID+"/api-keys", tok, nil, http.StatusCreated, &key)
	if !idRE("key_").MatchString(key.ID) || !regexp.MustCompile(`^om_[0-9a-f]{48}$`).MatchString(key.APIKey) || key.APIKey == acc.APIKey {
		t.Fatalf("new key %+v", key)
	}
	mustGet(t, s, "/v1/inboxes/"+in, key.APIKey, &inbox{})
	checkErr(t, s, "POST", "/admin/v1/accounts/acc_01JD7Z8Q7W3M1X5K2B9N4C6V8P/api-keys", tok, nil, http.StatusNotFound, "not_found")
	st, b, _ := call(s, "DELETE", "/admin/v1/api-keys/"+key.ID, tok, nil)
	if st != http.StatusNoContent || len(b) != 0 {
		t.Fatalf("revoke: %d %s", st, b)
	}
	checkErr(t, s, "GET", "/v1/inboxes/"+in, key.APIKey, nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "DELETE", "/admin/v1/api-keys/"+key.ID, tok, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "DELETE", "/admin/v1/api-keys/key_01JD7Z8Q7W3M1X5K2B9N4C6V8P", tok, nil, http.StatusNotFound, "not_found")
	mustGet(t, s, "/v1/inboxes/"+in, acc.APIKey, &inbox{})
	// An API key is not an admin token.
	checkErr(t, s, "GET", "/admin/v1/accounts", acc.APIKey, nil, http.StatusUnauthorized, "unauthorized")
}

func TestAPIAdminDisabled(t *testing.T) {
	t.Parallel()
	s := startAPI(t, func(c *app.Config) { c.AdminToken = "" })
	for _, key := range []string{"", testserver.AdminToken, "anything"} {
		for _, r := range []struct{ method, path string }{
			{"POST", "/admin/v1/accounts"}, {"GET", "/admin/v1/accounts"},
			{"POST", "/admin/v1/accounts/acc_01JD7Z8Q7W3M1X5K2B9N4C6V8P/api-keys"},
			{"DELETE", "/admin/v1/api-keys/key_01JD7Z8Q7W3M1X5K2B9N4C6V8P"},
		} {
			msg := checkErr(t, s, r.method, r.path, key, map[string]string{"name": "x"}, http.StatusForbidden, "admin_disabled")
			if !strings.Contains(msg, "admin-token") {
				t.Errorf("admin_disabled message %q does not say how to enable it", msg)
			}
		}
	}
	n, err := s.DB.CountAccounts()
	if err != nil || n != 0 {
		t.Fatalf("accounts %d, %v", n, err)
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAPISecretsNotLogged: API keys, webhook secrets and the admin token
// never appear in the logs, at debug level, whatever the requests do.
func TestAPISecretsNotLogged(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := startAPI(t, func(c *app.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	failing := newHookReceiver(t, http.StatusInternalServerError)
	a := s.NewAccount("a")
	var k2 struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts/"+a.ID+"/api-keys", testserver.AdminToken, nil, http.StatusCreated, &k2)
	s.MustJSON("DELETE", "/admin/v1/api-keys/"+k2.ID, testserver.AdminToken, nil, http.StatusNoContent, nil)
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "secret", "webhookUrl": failing.URL + "/in"})
	var rot struct{ WebhookSecret string }
	s.MustJSON("POST", "/v1/inboxes/"+in.ID+"/webhook/rotate-secret", a.Key, nil, http.StatusOK, &rot)
	var wh struct{ Secret string }
	s.MustJSON("PUT", "/v1/webhook", a.Key, map[string]any{"url": failing.URL + "/acct"}, http.StatusOK, &wh)
	checkErr(t, s, "POST", "/v1/inboxes/"+in.ID+"/webhook/test", a.Key, nil, http.StatusBadGateway, "webhook_failed")
	r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "s", "text": "t"})
	testserver.WaitFor(t, 10*time.Second, "event failed", func() bool { return s.EventStatus(a.Key, r.EventID) == "failed" })
	bogus := "om_" + strings.Repeat("9", 48)
	checkErr(t, s, "GET", "/v1/inboxes", bogus, nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "GET", "/v1/inboxes", k2.APIKey, nil, http.StatusUnauthorized, "unauthorized")
	checkErr(t, s, "GET", "/admin/v1/accounts", "wrong-admin-token", nil, http.StatusUnauthorized, "unauthorized")
	s.Stop()

	text := logs.String()
	if !strings.Contains(text, "account created") {
		t.Fatalf("the logs were not captured:\n%s", text)
	}
	for name, secret := range map[string]string{
		"API key": a.Key, "second API key": k2.APIKey, "inbox secret": in.WebhookSecret, "rotated secret": rot.WebhookSecret,
		"account secret": wh.Secret, "admin token": testserver.AdminToken, "bogus key": bogus, "wrong admin token": "wrong-admin-token",
	} {
		if secret != "" && strings.Contains(text, secret) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
	if strings.Contains(text, "whsec_") || strings.Contains(text, "om_") {
		t.Errorf("something secret-shaped appears in the logs")
	}
}
