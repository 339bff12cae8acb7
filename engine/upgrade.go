package engine

import (
	"net/http"
	"strconv"

	"github.com/mailwire/mailwire/engine/ws"
)

// upgrade is GET /v1/ws. The upgrade is completed even when the key is
// bad, so that browser clients learn why (error frame + 4001); malformed
// handshakes get 400, a draining server 503, and a client address that
// keeps failing to authenticate 429 with Retry-After (PROTOCOL.md §1).
// Origin is not checked: the credential is an API key, never a cookie, so
// a foreign page cannot ride on a user's session.
func (s *Server) upgrade(w http.ResponseWriter, r *req) error {
	if s.draining.Load() {
		return errDraining
	}
	key, problem := ws.CheckHandshake(r.Request)
	if problem != "" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		w.Header().Set("Connection", "close")
		return errf(http.StatusBadRequest, codeBadRequest, "not a WebSocket handshake: "+problem)
	}
	// The header wins over ?token= (PROTOCOL.md §1 [decision]).
	token := bearer(r.Request)
	if token == "" {
		token = r.URL.Query().Get("token")
	}
	apiKey, authErr := s.authenticate(token)
	if authErr != nil && authErr != errUnauthorized {
		return authErr
	}
	auth := ws.Auth{AccountID: apiKey.AccountID, KeyID: apiKey.ID}
	if authErr != nil {
		ip := clientIP(r.Request)
		if wait, blocked := s.throttle.failed(ip); blocked {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
			return errf(http.StatusTooManyRequests, codeRateLimited,
				"too many failed authentications from this address; retry later with a valid API key")
		}
		auth.Failure = "unauthorized: missing API key (Authorization: Bearer <key> or ?token=<key>)"
		if token != "" {
			auth.Failure = "unauthorized: unknown or revoked API key"
		}
	}
	if err := s.hub.Upgrade(w, r.Request, key, auth); err != nil {
		return err
	}
	// For the metrics only: the response is hijacked.
	if sw, ok := w.(*statusWriter); ok {
		sw.code = http.StatusSwitchingProtocols
	}
	return nil
}
