package engine

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lesismal/nbio/nbhttp"
)

// websocketGUID is RFC 6455's handshake constant.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// checkHandshake validates an RFC 6455 opening handshake; it returns the
// client key or an error for a 400 answer.
func checkHandshake(r *http.Request) (string, *apiError) {
	bad := func(msg string) (string, *apiError) {
		return "", errf(http.StatusBadRequest, codeBadRequest, "not a WebSocket handshake: "+msg)
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return bad(`missing "Connection: Upgrade"`)
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return bad(`missing "Upgrade: websocket"`)
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return bad("Sec-WebSocket-Version must be 13")
	}
	key := strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return bad("Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return key, nil
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// upgrade is GET /v1/ws. The upgrade is completed even when the key is
// bad, so that browser clients learn why (error frame + 4001); only
// malformed handshakes (400) and a draining server (503) are refused at the
// HTTP level (PROTOCOL.md §1). Origin is not checked: the credential is an
// API key, never a cookie, so a foreign page cannot ride on a user's
// session.
func (s *Server) upgrade(w http.ResponseWriter, r *req) error {
	if s.draining.Load() {
		return errDraining
	}
	key, herr := checkHandshake(r.Request)
	if herr != nil {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return herr
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

	raw, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusSwitchingProtocols) // for the metrics only: the response is hijacked
	nbc := nbioConn(raw)
	if nbc == nil {
		_ = raw.Close()
		return nil
	}
	c := &wsConn{nbc: nbc, hub: s.hub, accountID: apiKey.AccountID, keyID: apiKey.ID}
	c.dec.maxFrame = s.cfg.WS.MaxFrame
	c.openedAt = time.Now().UnixNano()
	c.lastPingAt.Store(c.openedAt)
	// Install the session before the 101 goes out: the client may send
	// its first frame as soon as it reads it.
	nbc.SetSession(c)
	if hc, ok := raw.(*nbhttp.Conn); ok {
		hc.Parser = nil
	}
	_ = nbc.SetReadDeadline(time.Time{}) // the heartbeat watches liveness now
	s.hub.opened(1)
	s.m.wsOpened.Inc()
	c.send([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(key) + "\r\n\r\n"))

	if authErr != nil {
		msg := "unauthorized: missing API key (Authorization: Bearer <key> or ?token=<key>)"
		if token != "" {
			msg = "unauthorized: unknown or revoked API key"
		}
		c.fail(closeUnauthorized, msg)
		return nil
	}
	if !s.hub.register(c) {
		c.fail(closeTooManyConns, "too many connections: at most "+strconv.Itoa(s.cfg.WS.MaxConnsPerAccount)+" per account")
		return nil
	}
	// A revocation or a drain that raced with this upgrade (checked above,
	// happened before register) must still close it.
	if ok, err := s.deps.DB.KeyExists(c.keyID); err == nil && !ok {
		c.fail(closeUnauthorized, "unauthorized: API key revoked")
	} else if s.draining.Load() {
		c.closeWith(closeGoingAway, "server shutting down")
	}
	return nil
}
