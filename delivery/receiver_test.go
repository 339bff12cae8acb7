package delivery_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// hit is one request a receiver got.
type hit struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a real HTTP endpoint on 127.0.0.1 whose answers the test
// scripts: respond(n) decides the n-th request's fate (n from 1).
type receiver struct {
	t    *testing.T
	URL  string
	srv  *http.Server
	mu   sync.Mutex
	hits []hit
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, URL: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.hits = append(r.hits, hit{time.Now(), req.Header.Clone(), body})
		n := len(r.hits)
		r.mu.Unlock()
		respond(n, w)
	})}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.hits)
}

func (r *receiver) get(i int) hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits[i]
}

func (r *receiver) waitHits(n int) {
	r.t.Helper()
	testserver.WaitFor(r.t, 10*time.Second, strconv.Itoa(n)+" webhook requests", func() bool { return r.count() >= n })
}

func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

// verify checks both signatures of a request with code written here,
// independently of the signer.
func verify(t *testing.T, h hit, secret string) {
	t.Helper()
	ts := h.header.Get("X-Timestamp")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(h.body)))
	if got, want := h.header.Get("X-Signature"), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("X-Signature %s, want %s", got, want)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	id := h.header.Get("webhook-id")
	mac = hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + h.header.Get("webhook-timestamp") + "." + string(h.body)))
	if got, want := h.header.Get("webhook-signature"), "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("webhook-signature %s, want %s", got, want)
	}
	if id != h.header.Get("X-Event-Id") || h.header.Get("webhook-timestamp") != ts {
		t.Fatalf("headers disagree: %v", h.header)
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)) > time.Minute {
		t.Fatalf("X-Timestamp %q", ts)
	}
	if h.header.Get("Content-Type") != "application/json" {
		t.Fatalf("Content-Type %q", h.header.Get("Content-Type"))
	}
}

// payload decodes a request body.
func payload(t *testing.T, h hit) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(h.body, &m); err != nil {
		t.Fatalf("body is not JSON: %s", h.body)
	}
	return m
}

// eventView is GET /v1/events/{id}.
type eventView struct {
	Event     map[string]any
	Status    string
	Delivered *string `json:"deliveredVia"`
	Attempts  []struct {
		N          int
		At         time.Time
		Channel    string
		OK         bool
		HTTPStatus int
		Error      string
	}
	NextAttemptAt *string
}

func getEvent(t *testing.T, s *testserver.Server, key, id string) eventView {
	t.Helper()
	var v eventView
	s.MustJSON("GET", "/v1/events/"+id, key, nil, http.StatusOK, &v)
	return v
}

// waitStatus waits until the event has the status and at least n attempts.
func waitStatus(t *testing.T, s *testserver.Server, key, id, st string, n int) eventView {
	t.Helper()
	var v eventView
	testserver.WaitFor(t, 15*time.Second, "event "+id+" "+st, func() bool {
		v = getEvent(t, s, key, id)
		return v.Status == st && len(v.Attempts) >= n
	})
	return v
}

// inboxWithHook creates an inbox with a webhook URL; returns its id and secret.
func inboxWithHook(t *testing.T, s *testserver.Server, key, name, url string) (string, string) {
	t.Helper()
	var out struct{ ID, WebhookSecret string }
	s.MustJSON("POST", "/v1/inboxes", key, map[string]string{"mailboxName": name, "webhookUrl": url}, http.StatusCreated, &out)
	return out.ID, out.WebhookSecret
}
