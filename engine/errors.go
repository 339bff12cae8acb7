package engine

import (
	"net/http"
)

// apiError is a client-visible error: a stable code, an HTTP status and a
// human message. The catalog below lists every code.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

// The error catalog (stable codes; docs/API.md lists them).
const (
	codeBadRequest          = "bad_request"        // 400 malformed input
	codeInvalidJSON         = "invalid_json"       // 400 body is not the JSON expected
	codeNoWebhookURL        = "no_webhook_url"     // 400 the inbox (and its account) has no webhook URL (as OpenMail)
	codeUnauthorized        = "unauthorized"       // 401 missing, unknown or revoked key
	codeForbidden           = "forbidden"          // 403
	codeAdminDisabled       = "admin_disabled"     // 403 no admin token configured
	codeNotFound            = "not_found"          // 404 unknown, or not this account's
	codeMethodNotAllowed    = "method_not_allowed" // 405
	codeAddressTaken        = "address_taken"      // 409 mailbox name in use
	codeConflict            = "conflict"           // 409 state does not allow it
	codeTooLarge            = "payload_too_large"  // 413
	codeUnsupportedType     = "unsupported_media_type"
	codeInvalidValue        = "invalid_value"          // 422 well-formed but unacceptable
	codeIdempotencyMismatch = "idempotency_key_reused" // 422 Idempotency-Key reused with another body
	codeRateLimited         = "rate_limited"           // 429 (with Retry-After)
	codeTooManyRequests     = "too_many_requests"      // 429 too many held pull requests (with Retry-After)
	codeWebhookFailed       = "webhook_failed"         // 502 test webhook did not answer 2xx
	codeDraining            = "draining"               // 503 shutting down
	codeBusy                = "busy"                   // 503 too many messages in flight (with Retry-After)
	codeUnavailable         = "unavailable"            // 503 storage failed (in a cluster: NATS unreachable)
	codeInsufficientStorage = "insufficient_storage"   // 507 free disk below --min-free-disk
	codeInternal            = "internal"               // 500
	codeNotImplemented      = "not_implemented"        // 501 this store lacks the feature (threads on a store without them)
)

func errNoWebhookURL(msg string) *apiError {
	return errf(http.StatusBadRequest, codeNoWebhookURL, msg)
}

var (
	errUnauthorized = errf(http.StatusUnauthorized, codeUnauthorized, "missing or invalid API key (use Authorization: Bearer <key>)")
	errDraining     = errf(http.StatusServiceUnavailable, codeDraining, "server is shutting down")
	errInternal     = errf(http.StatusInternalServerError, codeInternal, "internal error")
)
