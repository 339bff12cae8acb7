package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// SecretPrefix starts every webhook secret (the Standard Webhooks convention).
const SecretPrefix = "whsec_"

// secretRandomBytes is the entropy of a new secret: PROTOCOL.md §7 asks for
// 24 or more random bytes.
const secretRandomBytes = 24

// NewSecret returns a new webhook secret: "whsec_" followed by the standard
// base64 encoding of 24 bytes from crypto/rand.
func NewSecret() (string, error) {
	var b [secretRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cannot read random bytes for a webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// Signatures are the two signatures of one attempt's request.
type Signatures struct {
	// XSignature is the X-Signature header: lowercase hex HMAC-SHA256 keyed
	// with the whole secret string, over "<timestamp>.<body>".
	XSignature string
	// WebhookSignature is the webhook-signature header (Standard Webhooks):
	// "v1," + standard base64 HMAC-SHA256 keyed with the base64-decoded part
	// of the secret after "whsec_", over "<event id>.<timestamp>.<body>".
	WebhookSignature string
}

// Sign computes both signatures of a request carrying body for the event
// eventID at Unix time ts (seconds). It is a pure function.
//
// The Standard Webhooks key is the base64 decoding of the secret after its
// "whsec_" prefix (the whole secret when the prefix is missing); when that
// part is not valid standard base64, its raw bytes are the key, so a
// hand-made secret still signs consistently instead of failing delivery.
func Sign(secret, eventID string, ts int64, body []byte) Signatures {
	var tsBuf [20]byte
	tsb := strconv.AppendInt(tsBuf[:0], ts, 10)

	x := hmac.New(sha256.New, []byte(secret))
	x.Write(tsb)
	x.Write(dot)
	x.Write(body)
	var sum [sha256.Size]byte
	xs := hex.EncodeToString(x.Sum(sum[:0]))

	w := hmac.New(sha256.New, standardWebhooksKey(secret))
	w.Write([]byte(eventID))
	w.Write(dot)
	w.Write(tsb)
	w.Write(dot)
	w.Write(body)
	ws := "v1," + base64.StdEncoding.EncodeToString(w.Sum(sum[:0]))

	return Signatures{XSignature: xs, WebhookSignature: ws}
}

var dot = []byte{'.'}

func standardWebhooksKey(secret string) []byte {
	part := strings.TrimPrefix(secret, SecretPrefix)
	if key, err := base64.StdEncoding.DecodeString(part); err == nil {
		return key
	}
	return []byte(part)
}

// Headers are the per-attempt values a webhook request carries besides its
// body. Build them with SignHeaders; sign afresh for every attempt (the
// timestamp changes, the event id does not).
type Headers struct {
	EventID   string
	Timestamp int64 // Unix seconds of this attempt
	Signatures
}

// SignHeaders signs body for one attempt and returns its headers.
func SignHeaders(secret, eventID string, ts int64, body []byte) Headers {
	return Headers{EventID: eventID, Timestamp: ts, Signatures: Sign(secret, eventID, ts, body)}
}

// Header names as sent. The Standard Webhooks ones are lowercase as in that
// spec; HTTP header names are case-insensitive, but some receivers are not.
var (
	hdrEventID          = []byte("X-Event-Id")
	hdrTimestamp        = []byte("X-Timestamp")
	hdrSignature        = []byte("X-Signature")
	hdrWebhookID        = []byte("webhook-id")
	hdrWebhookTimestamp = []byte("webhook-timestamp")
	hdrWebhookSignature = []byte("webhook-signature")
)

// SetHeaders sets on req the headers of PROTOCOL.md §7: Content-Type
// application/json, X-Event-Id, X-Timestamp, X-Signature, webhook-id,
// webhook-timestamp, webhook-signature, and User-Agent DefaultUserAgent.
// It leaves the method, URI and body alone.
func SetHeaders(req *fasthttp.Request, h Headers) {
	var tsBuf [20]byte
	tsb := strconv.AppendInt(tsBuf[:0], h.Timestamp, 10)
	req.Header.SetContentType("application/json")
	req.Header.SetUserAgent(DefaultUserAgent)
	req.Header.SetCanonical(hdrEventID, []byte(h.EventID))
	req.Header.SetCanonical(hdrTimestamp, tsb)
	req.Header.SetCanonical(hdrSignature, []byte(h.XSignature))
	req.Header.SetCanonical(hdrWebhookID, []byte(h.EventID))
	req.Header.SetCanonical(hdrWebhookTimestamp, tsb)
	req.Header.SetCanonical(hdrWebhookSignature, []byte(h.WebhookSignature))
}
