package webhook

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// The Standard Webhooks known-answer vector (RELIABILITY.md).
const (
	kaSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	kaID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	kaTS     = 1614265330
	kaBody   = `{"test": 2432232314}`
	kaSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignStandardWebhooksVector(t *testing.T) {
	got := Sign(kaSecret, kaID, kaTS, []byte(kaBody))
	if got.WebhookSignature != kaSig {
		t.Fatalf("webhook-signature = %q, want %q", got.WebhookSignature, kaSig)
	}
}

func TestSignXSignatureIndependentVerifier(t *testing.T) {
	f := func(secret, id string, ts int64, body string) {
		t.Helper()
		s := Sign(secret, id, ts, []byte(body))
		if !verifyXSignature(secret, strconv.FormatInt(ts, 10), []byte(body), s.XSignature) {
			t.Fatalf("X-Signature %q does not verify for secret %q ts %d body %q", s.XSignature, secret, ts, body)
		}
		if s.XSignature != strings.ToLower(s.XSignature) || len(s.XSignature) != 64 {
			t.Fatalf("X-Signature %q is not 64 lowercase hex digits", s.XSignature)
		}
		if strings.HasPrefix(secret, "whsec_") && !verifyWebhookSignature(secret, id, strconv.FormatInt(ts, 10), []byte(body), s.WebhookSignature) {
			t.Fatalf("webhook-signature %q does not verify", s.WebhookSignature)
		}
	}
	f(kaSecret, kaID, kaTS, kaBody)
	f(kaSecret, "evt_01JD7Z8Q7W3M1X5K2B9N4C6V8P", 0, "")
	f("whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 32)), "evt_x", -1, "{}")
	f(strings.Repeat("k", 200), "evt_long_key", 1700000000, strings.Repeat("x", 5000)) // key longer than a block
}

func TestSignMalformedSecretUsesRawBytes(t *testing.T) {
	// "whsec_not base64!" does not decode: the raw part is the key.
	secret := "whsec_not base64!"
	s := Sign(secret, "evt_1", 42, []byte("{}"))
	want := "v1," + base64.StdEncoding.EncodeToString(hmacSHA256([]byte("not base64!"), []byte("evt_1.42.{}")))
	if s.WebhookSignature != want {
		t.Fatalf("webhook-signature = %q, want %q", s.WebhookSignature, want)
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two secrets are equal")
	}
	for _, s := range []string{a, b} {
		if !strings.HasPrefix(s, "whsec_") {
			t.Fatalf("secret %q lacks whsec_", s)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || len(raw) != 24 {
			t.Fatalf("secret %q: %d bytes, err %v; want 24 bytes of standard base64", s, len(raw), err)
		}
		// A new secret signs verifiably with a Standard Webhooks verifier.
		sig := Sign(s, "evt_1", 1, []byte("x"))
		if !verifyWebhookSignature(s, "evt_1", "1", []byte("x"), sig.WebhookSignature) {
			t.Fatal("new secret does not verify")
		}
	}
}

func TestSetHeaders(t *testing.T) {
	var req fasthttp.Request
	h := SignHeaders(kaSecret, kaID, kaTS, []byte(kaBody))
	SetHeaders(&req, h)
	want := map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "mailwire-webhook/1",
		"X-Event-Id":        kaID,
		"X-Timestamp":       "1614265330",
		"X-Signature":       h.XSignature,
		"webhook-id":        kaID,
		"webhook-timestamp": "1614265330",
		"webhook-signature": kaSig,
	}
	// Names exactly as sent: the Standard Webhooks ones in lowercase.
	got := map[string]string{}
	for k, v := range req.Header.All() {
		got[string(k)] = string(v)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %q)", k, got[k], v, got)
		}
	}
}

func BenchmarkSign2KiB(b *testing.B) {
	body := []byte(strings.Repeat("a", 2048))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		Sign(kaSecret, kaID, kaTS, body)
	}
}
