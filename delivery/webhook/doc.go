// Package webhook holds the parts of webhook delivery that need no
// database: signing (PROTOCOL.md §7), the SSRF guard for receiver URLs, and
// the HTTP client that makes one delivery attempt.
//
// Signing: NewSecret makes a "whsec_" secret; Sign and SignHeaders compute
// the X-Signature (hex HMAC-SHA256 keyed with the secret string) and the
// Standard Webhooks webhook-signature; SetHeaders puts them on a request.
//
// SSRF: ValidateURL (CheckURL with a chosen resolver) checks a URL when a
// user saves it and returns errors that wrap ErrInvalidURL or match
// ErrForbiddenAddress, for a 422 answer. Dialer checks again on every
// connection, against the addresses actually dialed, which defeats DNS
// rebinding. Both apply one policy, documented on CheckURL and
// forbiddenReason.
//
// Client.Post makes one attempt and reports it as a Result: success is a 2xx
// status, everything else (3xx, 4xx, 5xx, timeout, refused, reset, an address
// the guard refuses, a body read error) is a Result.Err with a short message.
// The Client follows no redirect, retries nothing (the delivery schedule
// retries, signing afresh), ignores proxy environment variables, bounds the
// whole attempt by Config.Timeout however slowly the receiver trickles its
// answer, and reads at most Config.MaxResponseBody bytes of a body.
//
// Concurrency: Client and Dialer are safe for concurrent use; Sign,
// SignHeaders, ValidateURL and CheckURL are pure apart from resolving.
// A Client owns fasthttp's background cleaner goroutines, which exit within
// Config.IdleConnTimeout (at least 1 s) after Close once no connection is
// open.
//
// Every limit, with its reason, is in limits.go.
package webhook
