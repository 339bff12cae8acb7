package engine_test

// Helpers shared by the HTTP API tests (api_*_test.go). Every test talks
// to a real node started by internal/testserver over real sockets.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// apiTimeRE is the API's and the payload's time format
// (2006-01-02T15:04:05.000Z).
var apiTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// idRE matches an id of the given prefix (prefix + ULID).
func idRE(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^` + prefix + `[0-9A-HJKMNP-TV-Z]{26}$`)
}

// fastRetry makes events fail fast when nobody listens: two attempts, the
// second 50 ms after the first.
func fastRetry(c *app.Config) { c.Delivery.Schedule = []time.Duration{0, 50 * time.Millisecond} }

// startAPI starts a node for the API tests (fast retries, so events reach
// a final status quickly).
func startAPI(t *testing.T, mods ...func(*app.Config)) *testserver.Server {
	t.Helper()
	return testserver.Start(t, append([]func(*app.Config){fastRetry}, mods...)...)
}

// call sends a request and returns status, body and headers.
func call(s *testserver.Server, method, path, key string, body any, hdr ...string) (int, []byte, http.Header) {
	return s.Do(method, path, key, body, hdr...)
}

// mustGet GETs path and decodes the 200 answer into out.
func mustGet(t *testing.T, s *testserver.Server, path, key string, out any) {
	t.Helper()
	s.MustJSON("GET", path, key, nil, http.StatusOK, out)
}

// wantError checks that a response is the API's error shape
// {"error":code,"message":"..."} with the wanted status, and returns the
// message.
func wantError(t *testing.T, what string, status int, body []byte, wantStatus int, wantCode string) string {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d: %s", what, status, wantStatus, body)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: error body is not JSON: %q", what, body)
	}
	code, _ := e["error"].(string)
	msg, _ := e["message"].(string)
	if len(e) != 2 || code == "" || msg == "" {
		t.Fatalf("%s: error body must be {\"error\",\"message\"}, got %s", what, body)
	}
	if wantCode != "" && code != wantCode {
		t.Fatalf("%s: error %q, want %q (message %q)", what, code, wantCode, msg)
	}
	return msg
}

// checkErr sends a request and checks the error answer; it returns the
// message.
func checkErr(t *testing.T, s *testserver.Server, method, path, key string, body any, wantStatus int, wantCode string, hdr ...string) string {
	t.Helper()
	st, b, _ := call(s, method, path, key, body, hdr...)
	return wantError(t, method+" "+path, st, b, wantStatus, wantCode)
}

// inbox is the API's inbox object.
type inbox struct {
	ID            string  `json:"id"`
	Address       string  `json:"address"`
	MailboxName   string  `json:"mailboxName"`
	DisplayName   *string `json:"displayName"`
	WebhookURL    *string `json:"webhookUrl"`
	WebhookSecret string  `json:"webhookSecret"`
	PodID         *string `json:"podId"`
	CreatedAt     string  `json:"createdAt"`
}

type listOf[T any] struct {
	Data  []T `json:"data"`
	Total int `json:"total"`
}

type inboundReply struct {
	MessageID string `json:"messageId"`
	EventID   string `json:"eventId"`
	ThreadID  string `json:"threadId"`
}

type attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	SizeBytes   int    `json:"sizeBytes"`
	URL         string `json:"url"`
}

type message struct {
	ID           string       `json:"id"`
	InboxID      string       `json:"inboxId"`
	ThreadID     string       `json:"threadId"`
	RFCMessageID string       `json:"rfcMessageId"`
	From         string       `json:"from"`
	To           string       `json:"to"`
	Cc           []string     `json:"cc"`
	Subject      string       `json:"subject"`
	BodyText     string       `json:"bodyText"`
	BodyHTML     *string      `json:"bodyHtml"`
	Attachments  []attachment `json:"attachments"`
	ReceivedAt   string       `json:"receivedAt"`
}

type eventSummary struct {
	ID            string  `json:"id"`
	Type          string  `json:"type"`
	InboxID       string  `json:"inboxId"`
	Status        string  `json:"status"`
	DeliveredVia  *string `json:"deliveredVia"`
	Attempts      int     `json:"attempts"`
	NextAttemptAt *string `json:"nextAttemptAt"`
	OccurredAt    string  `json:"occurredAt"`
}

type attemptView struct {
	N          int    `json:"n"`
	At         string `json:"at"`
	Channel    string `json:"channel"`
	OK         bool   `json:"ok"`
	HTTPStatus int    `json:"httpStatus"`
	Error      string `json:"error"`
	DurationMs *int64 `json:"durationMs"`
}

type eventView struct {
	Event         json.RawMessage `json:"event"`
	Status        string          `json:"status"`
	DeliveredVia  *string         `json:"deliveredVia"`
	Attempts      []attemptView   `json:"attempts"`
	NextAttemptAt *string         `json:"nextAttemptAt"`
}

// createInbox creates an inbox with body and returns it (201 expected).
func createInbox(t *testing.T, s *testserver.Server, key string, body any) inbox {
	t.Helper()
	var in inbox
	s.MustJSON("POST", "/v1/inboxes", key, body, http.StatusCreated, &in)
	return in
}

// inboundJSON posts a JSON inbound message (202 expected).
func inboundJSON(t *testing.T, s *testserver.Server, key, inboxID string, body any, hdr ...string) (inboundReply, http.Header) {
	t.Helper()
	st, b, h := call(s, "POST", "/v1/inboxes/"+inboxID+"/inbound", key, body, hdr...)
	if st != http.StatusAccepted {
		t.Fatalf("inbound: status %d, want 202: %s", st, b)
	}
	var r inboundReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("inbound: cannot decode %s: %v", b, err)
	}
	return r, h
}

// inboundRaw posts a raw RFC 5322 message (202 expected).
func inboundRaw(t *testing.T, s *testserver.Server, key, inboxID string, raw []byte, hdr ...string) (inboundReply, http.Header) {
	t.Helper()
	st, b, h := call(s, "POST", "/v1/inboxes/"+inboxID+"/inbound", key, raw, append([]string{"Content-Type", "message/rfc822"}, hdr...)...)
	if st != http.StatusAccepted {
		t.Fatalf("raw inbound: status %d, want 202: %s", st, b)
	}
	var r inboundReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("raw inbound: cannot decode %s: %v", b, err)
	}
	return r, h
}

// totals returns the list totals of the account's inboxes, of the
// inbox's messages (when inboxID is set) and of the account's events.
func totals(t *testing.T, s *testserver.Server, key, inboxID string) (inboxes, messages, events int) {
	t.Helper()
	var li, lm, le listOf[json.RawMessage]
	mustGet(t, s, "/v1/inboxes", key, &li)
	if inboxID != "" {
		mustGet(t, s, "/v1/inboxes/"+inboxID+"/messages", key, &lm)
	}
	mustGet(t, s, "/v1/events", key, &le)
	return li.Total, lm.Total, le.Total
}

// rawClient is an HTTP client for goroutines (it reports errors instead
// of failing the test) whose idle connections are closed at cleanup.
func rawClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// hookReceiver is a webhook endpoint on 127.0.0.1 that verifies both
// signatures of every request with its own code (PROTOCOL.md §7) and
// answers status.
type hookReceiver struct {
	*httptest.Server

	mu struct {
		sync.Mutex
		secret string
		status int
		got    []hookRequest
	}
}

type hookRequest struct {
	Header    http.Header
	Body      []byte
	SigOK     bool // X-Signature verified
	StdSigOK  bool // webhook-signature verified
	VerifyErr string
}

func newHookReceiver(t *testing.T, status int) *hookReceiver {
	h := &hookReceiver{}
	h.mu.status = status
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) setSecret(s string) {
	h.mu.Lock()
	h.mu.secret = s
	h.mu.Unlock()
}

func (h *hookReceiver) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.mu.got...)
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	secret, status := h.mu.secret, h.mu.status
	h.mu.Unlock()
	hr := hookRequest{Header: r.Header.Clone(), Body: body}
	hr.SigOK, hr.StdSigOK, hr.VerifyErr = verifyHook(secret, r.Header, body)
	h.mu.Lock()
	h.mu.got = append(h.mu.got, hr)
	h.mu.Unlock()
	// No keep-alive: the sender's pool holds no idle connection to a
	// receiver that is gone after the test.
	w.Header().Set("Connection", "close")
	w.WriteHeader(status)
	_, _ = w.Write([]byte("ok"))
}

// verifyHook checks X-Signature (hex HMAC-SHA256, key = the secret string,
// over "ts.body") and webhook-signature (Standard Webhooks: base64
// HMAC-SHA256, key = base64-decoded secret after whsec_, over
// "id.ts.body") independently of the server's code.
func verifyHook(secret string, h http.Header, body []byte) (sigOK, stdOK bool, problem string) {
	ts := h.Get("X-Timestamp")
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return false, false, "X-Timestamp " + strconv.Quote(ts) + " is not Unix seconds"
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	sigOK = hmac.Equal([]byte(want), []byte(h.Get("X-Signature")))

	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return sigOK, false, "secret is not whsec_ + base64"
	}
	id := h.Get("webhook-id")
	mac = hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + h.Get("webhook-timestamp") + "." + string(body)))
	stdWant := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	stdOK = hmac.Equal([]byte(stdWant), []byte(h.Get("webhook-signature"))) && id == h.Get("X-Event-Id") && h.Get("webhook-timestamp") == ts
	if !sigOK || !stdOK {
		problem = fmt.Sprintf("X-Signature ok=%v, webhook-signature ok=%v", sigOK, stdOK)
	}
	return sigOK, stdOK, problem
}

// rawConn is a plain TCP connection to the server for requests the
// net/http client cannot make (a Content-Length it does not send).
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *testserver.Server) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// readResponse reads one HTTP response and its whole body.
func (c *rawConn) readResponse(t *testing.T, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, b
}

// mustDecode decodes b into v or fails.
func mustDecode(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: cannot decode %s: %v", what, b, err)
	}
}

// jsonKeys returns the keys of a JSON object in document order.
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %s", b)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("bad JSON %s: %v", b, err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("bad JSON %s: %v", b, err)
		}
	}
	return keys
}

// mustJSONText is v as JSON text (to compare values holding pointers).
func mustJSONText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
