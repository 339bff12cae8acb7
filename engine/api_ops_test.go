package engine_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

func TestAPIHealthReadyDrain(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")

	var h map[string]string
	s.MustJSON("GET", "/healthz", "", nil, http.StatusOK, &h)
	if h["status"] != "ok" {
		t.Errorf("healthz %v", h)
	}
	s.MustJSON("GET", "/readyz", "", nil, http.StatusOK, &h)
	if h["status"] != "ready" {
		t.Errorf("readyz %v", h)
	}
	// HEAD answers like GET without a body: the next answer on the same
	// connection must parse.
	// /metrics sets no Content-Length (a chunked answer to GET). HEAD is
	// refused on the WebSocket endpoint: its handshake is a GET.
	c := dialRaw(t, s)
	if _, err := c.Write([]byte("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" +
		"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if resp, body := c.readResponse(t, "HEAD"); resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength <= 0 {
		t.Errorf("HEAD /healthz: %d %q Content-Length %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, body := c.readResponse(t, "HEAD"); resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength <= 0 {
		t.Errorf("HEAD /metrics: %d %q Content-Length %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, _ := c.readResponse(t, "HEAD"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("HEAD /v1/ws: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if resp, body := c.readResponse(t, "GET"); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ready") {
		t.Errorf("GET after HEADs on one connection: %d %q", resp.StatusCode, body)
	}

	s.Engine.Drain()
	st, body, _ := call(s, "GET", "/readyz", "", nil)
	if st != http.StatusServiceUnavailable || !strings.Contains(string(body), "draining") {
		t.Errorf("readyz while draining: %d %s", st, body)
	}
	if st, _, _ := call(s, "GET", "/healthz", "", nil); st != http.StatusOK {
		t.Errorf("healthz while draining: %d", st)
	}
	// API calls are refused while draining, and nothing is written.
	checkErr(t, s, "GET", "/v1/inboxes", a.Key, nil, http.StatusServiceUnavailable, "draining")
	checkErr(t, s, "POST", "/v1/inboxes", a.Key, map[string]string{"mailboxName": "late"}, http.StatusServiceUnavailable, "draining")
	if n, err := s.DB.CountAccounts(); err != nil || n != 1 {
		t.Errorf("accounts %d %v", n, err)
	}
	s.Engine.Drain() // idempotent
}

func TestAPIMetrics(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	s.Inbound(a.Key, in, "m")
	checkErr(t, s, "GET", "/v1/inboxes", "om_"+strings.Repeat("0", 48), nil, http.StatusUnauthorized, "unauthorized")

	st, body, hdr := call(s, "GET", "/metrics", "", nil)
	if st != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %q", st, hdr.Get("Content-Type"))
	}
	text := string(body)
	for _, want := range []string{
		`mailwire_http_requests_total{method="POST",route="/v1/inboxes",code="201"} 1`,
		`mailwire_http_requests_total{method="GET",route="/v1/inboxes",code="401"} 1`,
		`mailwire_http_requests_total{method="POST",route="/v1/inboxes/{id}/inbound",code="202"} 1`,
		`mailwire_http_request_duration_seconds_bucket{method="POST",route="/v1/inboxes",le="+Inf"} 1`,
		`mailwire_build_info{version="test"} 1`,
		"# TYPE mailwire_http_request_duration_seconds histogram\n",
		"# HELP mailwire_events_stored_total Events durably stored.\n",
		"mailwire_ws_connections 0",
		"mailwire_events_stored_total 1",
		"mailwire_auth_failures_total 1",
		"go_goroutines ",
		"process_resident_memory_bytes ",
		"mailwire_pebble_disk_usage_bytes ",
		"mailwire_pebble_wal_bytes ",
		"mailwire_pebble_read_amplification ",
	} {
		if strings.HasPrefix(want, "mailwire_pebble_") && testserver.OnNATSEnv() {
			continue // a cluster node has no Pebble
		}
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every line is a comment or "name{labels} value".
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) < 2 {
			t.Errorf("malformed metrics line %q", line)
		}
	}
	// Unmatched routes are one label, not one per path.
	call(s, "GET", "/no/such/path/1", "", nil)
	call(s, "GET", "/no/such/path/2", "", nil)
	_, body, _ = call(s, "GET", "/metrics", "", nil)
	if !strings.Contains(string(body), `mailwire_http_requests_total{method="GET",route="unmatched",code="404"} 2`) || strings.Contains(string(body), "/no/such") {
		t.Errorf("unmatched routes are not folded into one label")
	}
}

func TestAPIUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	for _, p := range []string{"/", "/nope", "/v1", "/v2/inboxes", "/v1/inboxes/x/y/z", "/v1/messages", "/admin/v1", "/v1/attachments/x"} {
		msg := checkErr(t, s, "GET", p, a.Key, nil, http.StatusNotFound, "not_found")
		if !strings.Contains(msg, p) {
			t.Errorf("404 message %q does not name the path %q", msg, p)
		}
	}
	for _, r := range []struct{ method, path string }{
		{"DELETE", "/v1/events"}, {"PUT", "/v1/inboxes"}, {"POST", "/healthz"}, {"POST", "/v1/messages/msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P"},
		{"PUT", "/v1/inboxes/inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P"}, {"GET", "/v1/inboxes/inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P/inbound"},
		{"PATCH", "/v1/webhook"}, {"GET", "/admin/v1/api-keys/key_01JD7Z8Q7W3M1X5K2B9N4C6V8P"},
	} {
		st, body, h := call(s, r.method, r.path, a.Key, nil)
		msg := wantError(t, r.method+" "+r.path, st, body, http.StatusMethodNotAllowed, "method_not_allowed")
		if !strings.Contains(msg, r.method) {
			t.Errorf("405 message %q does not name the method", msg)
		}
		if h.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without an Allow header", r.method, r.path)
		}
	}
	// Unknown routes answer 404 before authentication.
	checkErr(t, s, "GET", "/v1/nothing", "", nil, http.StatusNotFound, "not_found")
}

// TestAPIErrorBodies: every error answer is JSON {"error","message"} with
// Content-Type application/json.
func TestAPIErrorBodies(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	for _, r := range []struct {
		method, path, key string
		body              any
	}{
		{"GET", "/nope", "", nil},
		{"GET", "/v1/inboxes", "", nil},
		{"GET", "/v1/inboxes/bad", a.Key, nil},
		{"POST", "/v1/inboxes", a.Key, []byte("{")},
		{"POST", "/v1/inboxes", a.Key, map[string]string{"mailboxName": "x"}},
		{"DELETE", "/healthz", "", nil},
	} {
		st, body, h := call(s, r.method, r.path, r.key, r.body)
		if st < 400 {
			t.Fatalf("%s %s: %d", r.method, r.path, st)
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", r.method, r.path, ct)
		}
		wantError(t, r.method+" "+r.path, st, body, st, "")
		if !json.Valid(body) || !bytes.HasSuffix(body, []byte("\n")) {
			t.Errorf("%s %s: body %q", r.method, r.path, body)
		}
	}
}

// TestAPIRestart: everything written through the API survives a restart,
// and keys still authenticate.
func TestAPIRestart(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	b := s.NewAccount("b")
	var k2 struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts/"+a.ID+"/api-keys", testserver.AdminToken, nil, http.StatusCreated, &k2)
	var k3 struct{ ID, APIKey string }
	s.MustJSON("POST", "/admin/v1/accounts/"+a.ID+"/api-keys", testserver.AdminToken, nil, http.StatusCreated, &k3)
	s.MustJSON("DELETE", "/admin/v1/api-keys/"+k3.ID, testserver.AdminToken, nil, http.StatusNoContent, nil)

	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "persist", "displayName": "Persist", "webhookUrl": "http://127.0.0.1:9/in"})
	bin := createInbox(t, s, b.Key, map[string]any{"mailboxName": "other"})
	var wh map[string]string
	s.MustJSON("PUT", "/v1/webhook", a.Key, map[string]any{"url": "http://127.0.0.1:9/acct"}, http.StatusOK, &wh)
	r1, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "first", "text": "1",
		"attachments": []map[string]string{{"filename": "f.txt", "contentType": "text/plain", "contentBase64": "ZmlsZQ=="}}}, "Idempotency-Key", "restart-key")
	raw := rawMessage("persist@mail.test", "<persist@example.com>", "raw", "raw body")
	r2, _ := inboundRaw(t, s, a.Key, in.ID, raw)
	r3, _ := inboundJSON(t, s, b.Key, bin.ID, map[string]any{"from": "c@example.com", "subject": "b", "text": "b"})
	// Let the deliveries finish (they fail: the webhook port refuses).
	for _, c := range []struct{ key, evt string }{{a.Key, r1.EventID}, {a.Key, r2.EventID}, {b.Key, r3.EventID}} {
		testserver.WaitFor(t, 10*time.Second, "event settled", func() bool { return s.EventStatus(c.key, c.evt) == "failed" })
	}
	snapshot := func() map[string]string {
		out := map[string]string{}
		for _, p := range []struct{ key, path string }{
			{a.Key, "/v1/inboxes"}, {a.Key, "/v1/inboxes/" + in.ID}, {a.Key, "/v1/inboxes/" + in.ID + "/messages"},
			{a.Key, "/v1/messages/" + r1.MessageID}, {a.Key, "/v1/messages/" + r2.MessageID + "/raw"},
			{a.Key, "/v1/attachments/" + r1.MessageID + "/f.txt"}, {a.Key, "/v1/events"}, {a.Key, "/v1/events/" + r1.EventID},
			{a.Key, "/v1/webhook"}, {b.Key, "/v1/inboxes"}, {b.Key, "/v1/events/" + r3.EventID},
			{testserver.AdminToken, "/admin/v1/accounts"},
		} {
			st, body, _ := call(s, "GET", p.path, p.key, nil)
			if st != http.StatusOK {
				t.Fatalf("GET %s: %d %s", p.path, st, body)
			}
			out[p.path] = string(body)
		}
		return out
	}
	before := snapshot()

	s.Restart()

	after := snapshot()
	for p, b := range before {
		if after[p] != b {
			t.Errorf("GET %s changed across the restart:\n%s\n%s", p, b, after[p])
		}
	}
	mustGet(t, s, "/v1/inboxes", k2.APIKey, &listOf[inbox]{})
	checkErr(t, s, "GET", "/v1/inboxes", k3.APIKey, nil, http.StatusUnauthorized, "unauthorized")
	// The idempotency record survived: the same key replays.
	r1again, h := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "first", "text": "1",
		"attachments": []map[string]string{{"filename": "f.txt", "contentType": "text/plain", "contentBase64": "ZmlsZQ=="}}}, "Idempotency-Key", "restart-key")
	if r1again != r1 || h.Get("Idempotent-Replayed") != "true" {
		t.Errorf("idempotent replay after restart: %+v %q", r1again, h.Get("Idempotent-Replayed"))
	}
	// The address is still taken, the secrets still rotate, threads still join.
	checkErr(t, s, "POST", "/v1/inboxes", b.Key, map[string]string{"mailboxName": "persist"}, http.StatusConflict, "address_taken")
	s.MustJSON("POST", "/v1/webhook/rotate-secret", a.Key, nil, http.StatusOK, nil)
	s.MustJSON("POST", "/v1/inboxes/"+in.ID+"/webhook/rotate-secret", a.Key, nil, http.StatusOK, nil)
	reply, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "re", "text": "r", "inReplyTo": "<persist@example.com>"})
	if reply.ThreadID != r2.ThreadID {
		t.Errorf("thread after restart %s, want %s", reply.ThreadID, r2.ThreadID)
	}
}
