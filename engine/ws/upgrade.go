package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lesismal/nbio"
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

// CheckHandshake validates an RFC 6455 opening handshake (§4.1: an
// HTTP/1.1 GET with Upgrade, Connection, version 13 and a 16-byte key). It
// returns the client's key, or a description of what is wrong for a 400
// answer.
func CheckHandshake(r *http.Request) (key string, problem string) {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return "", "the opening handshake must be HTTP/1.1 or later, not " + r.Proto
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") {
		return "", `missing "Connection: Upgrade"`
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket") {
		return "", `missing "Upgrade: websocket"`
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", "Sec-WebSocket-Version must be 13"
	}
	key = strings.TrimSpace(r.Header.Get("Sec-WebSocket-Key"))
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 16 {
		return "", "Sec-WebSocket-Key must be 16 bytes in base64"
	}
	return key, ""
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Auth is the outcome of authenticating an upgrade request.
type Auth struct {
	AccountID, KeyID string
	// Failure, when set, is the reason the key was refused: the upgrade is
	// completed and the client gets an error frame and close 4001
	// (PROTOCOL.md §1).
	Failure string
}

// Upgrade completes the opening handshake of r (checked by CheckHandshake,
// key being its Sec-WebSocket-Key) on its hijacked connection and serves
// the connection from then on. It writes nothing on w unless hijacking
// fails.
func (h *Hub) Upgrade(w http.ResponseWriter, r *http.Request, key string, auth Auth) error {
	raw, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return err
	}
	nbc := nbioConn(raw)
	if nbc == nil {
		_ = raw.Close()
		return errors.New("BUG: hijacked connection is not an nbio connection")
	}
	c := &conn{nbc: nbc, hub: h, accountID: auth.AccountID, keyID: auth.KeyID}
	c.dec.maxFrame = h.cfg.MaxFrame
	c.openedAt = time.Now().UnixNano()
	c.lastPingAt.Store(c.openedAt)
	// c.mu is held until the 101 is queued: a close that races with the
	// upgrade (a drain, a revocation, the poller seeing the socket end)
	// finds the connection registered and writes its frames after the
	// 101, never before it.
	c.mu.Lock()
	// Counted before the session is installed: once it is, the poller may
	// end the connection (a close frame right behind the handshake), and
	// ending must find it registered, or its account slot would leak.
	full := auth.Failure == "" && !h.register(c)
	// Install the session before the 101 goes out: the client may send
	// its first frame as soon as it reads it.
	nbc.SetSession(c)
	if hc, ok := raw.(*nbhttp.Conn); ok {
		hc.Parser = nil
	}
	_ = nbc.SetReadDeadline(time.Time{}) // the heartbeat watches liveness now
	h.open.Add(1)
	h.m.opened.Inc()
	_ = c.writeLocked([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(key) + "\r\n\r\n"))
	c.mu.Unlock()

	if auth.Failure != "" {
		c.fail(closeUnauthorized, auth.Failure)
		return nil
	}
	if full {
		c.fail(closeTooManyConns, "too many connections: at most "+strconv.Itoa(h.cfg.MaxConnsPerAccount)+" per account")
		return nil
	}
	// A revocation or a drain that raced with this upgrade (checked
	// before, happened before register) must still close it.
	if ok, err := h.backend.KeyValid(c.keyID); err == nil && !ok {
		c.fail(closeUnauthorized, "unauthorized: API key revoked")
	} else if h.draining.Load() {
		c.close(closeGoingAway, "server shutting down")
	}
	return nil
}

// Drain closes every connection with 1001 and makes upgrades that race
// with it close the same way.
func (h *Hub) Drain() {
	h.draining.Store(true)
	h.CloseAll(closeGoingAway, "server shutting down")
}

// nbioConn unwraps the nbio connection under an nbhttp one.
func nbioConn(c net.Conn) *nbio.Conn {
	switch v := c.(type) {
	case *nbio.Conn:
		return v
	case *nbhttp.Conn:
		return nbioConn(v.Conn)
	}
	return nil
}
