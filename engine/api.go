package engine

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// routes is the whole HTTP surface (spec/API.md), top to bottom.
func (s *Server) routes() *router {
	rt := &router{}
	rt.add("GET /healthz", authNone, s.healthz)
	rt.add("GET /readyz", authNone, s.readyz)
	rt.add("GET /metrics", authNone, s.metricsHandler)
	rt.add("GET /v1/ws", authNone, s.upgrade).getOnly() // authenticates itself (PROTOCOL.md §1)
	rt.add("GET /console", authNone, s.consolePage)     // the web console (engine/console)
	rt.add("GET /console/{file}", authNone, s.consoleFile)

	rt.add("GET /v1/openapi.json", authAccount, s.openAPI)

	rt.add("POST /v1/inboxes", authAccount, s.createInbox)
	rt.add("GET /v1/inboxes", authAccount, s.listInboxes)
	rt.add("GET /v1/inboxes/{id}", authAccount, s.getInbox)
	rt.add("PATCH /v1/inboxes/{id}", authAccount, s.patchInbox)
	rt.add("DELETE /v1/inboxes/{id}", authAccount, s.deleteInbox)
	rt.add("POST /v1/inboxes/{id}/webhook/rotate-secret", authAccount, s.rotateInboxSecret)
	rt.add("POST /v1/inboxes/{id}/webhook/test", authAccount, s.testInboxWebhook)
	rt.add("POST /v1/inboxes/{id}/inbound", authAccount, s.inbound)
	rt.add("GET /v1/inboxes/{id}/messages", authAccount, s.listMessages)
	rt.add("GET /v1/inboxes/{id}/threads", authAccount, s.listThreads)
	rt.add("GET /v1/threads/{id}/messages", authAccount, s.threadMessages)
	rt.add("PATCH /v1/threads/{id}", authAccount, s.patchThread)

	rt.add("GET /v1/webhook", authAccount, s.getWebhook)
	rt.add("PUT /v1/webhook", authAccount, s.putWebhook)
	rt.add("DELETE /v1/webhook", authAccount, s.deleteWebhook)
	rt.add("POST /v1/webhook/rotate-secret", authAccount, s.rotateWebhookSecret)

	rt.add("GET /v1/messages/{id}", authAccount, s.getMessage)
	rt.add("GET /v1/messages/{id}/raw", authAccount, s.getRaw)
	rt.add("GET /v1/attachments/{messageId}/{filename}", authAccount, s.getAttachment)

	rt.add("GET /v1/events", authAccount, s.listEvents)
	rt.add("GET /v1/events/stream", authAccount, s.streamEvents) // before {id}: the router takes the first match
	rt.add("POST /v1/events/ack", authAccount, s.ackEvents)
	rt.add("GET /v1/events/{id}", authAccount, s.getEvent)
	rt.add("POST /v1/events/{id}/redeliver", authAccount, s.redeliver)

	rt.add("POST /v1/mcp", authAccount, s.mcp) // MCP, streamable HTTP (stateless: GET and DELETE are 405)

	rt.add("POST /admin/v1/accounts", authAdmin, s.adminCreateAccount)
	rt.add("GET /admin/v1/accounts", authAdmin, s.adminListAccounts)
	rt.add("GET /admin/v1/accounts/{id}/api-keys", authAdmin, s.adminListKeys)
	rt.add("POST /admin/v1/accounts/{id}/api-keys", authAdmin, s.adminCreateKey)
	rt.add("DELETE /admin/v1/api-keys/{keyId}", authAdmin, s.adminRevokeKey)
	rt.add("GET /admin/v1/stats", authAdmin, s.adminStats)   // extension: the operator view
	rt.add("GET /admin/v1/events", authAdmin, s.adminEvents) // extension: events across accounts

	rt.add("GET /debug/pprof/{name}", authAdmin, s.debugPprof)
	return rt
}

func apiTime(t time.Time) string { return string(store.AppendTime(nil, t)) }

func msTime(ms int64) *string {
	if ms == 0 {
		return nil
	}
	t := apiTime(time.UnixMilli(ms))
	return &t
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// idParam returns the path parameter name after checking it is an id of
// the given kind (400 otherwise).
func idParam(r *req, name, prefix, what string) (string, error) {
	v := r.param(name)
	if !ids.Valid(prefix, v) {
		return "", errf(http.StatusBadRequest, codeBadRequest, "malformed "+what+" id "+quoteShort(v)+" (expected "+prefix+"…)")
	}
	return v, nil
}

// quoteShort quotes client input for an error message: cut to 64 bytes,
// invalid UTF-8 replaced, API keys never echoed (a key pasted where an id
// belongs must not land in a client's logs or ours).
func quoteShort(s string) string {
	s = redactKeys(s)
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

var apiKeyRE = regexp.MustCompile(`om_[0-9A-Za-z]{4,}`)

// redactKeys replaces everything shaped like an API key in s.
func redactKeys(s string) string {
	if !strings.Contains(s, "om_") {
		return s
	}
	return apiKeyRE.ReplaceAllString(s, "om_…(an API key, not shown)")
}

// mapStoreErr turns store errors into API errors.
func mapStoreErr(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return errf(http.StatusNotFound, codeNotFound, what+" not found")
	}
	return err
}

var mailboxRE = regexp.MustCompile(`^[a-z0-9._-]{3,30}$`)

func (s *Server) healthz(w http.ResponseWriter, _ *req) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

func (s *Server) readyz(w http.ResponseWriter, _ *req) error {
	if s.draining.Load() {
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	}
	if !s.started.Load() {
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting"})
	}
	if why := s.deps.DB.Health(); why != "" {
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "store_unavailable", "reason": why})
	}
	if why := s.deps.Limits.Disk.Status(); why != "" {
		// Sockets, replay, reads and retries go on; new mail does not.
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "refusing_ingest", "reason": why})
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
