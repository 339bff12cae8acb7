package engine

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/internal/promtext"
	"github.com/mailwire/mailwire/store"
)

var timeNow = time.Now

// inbound is POST /v1/inboxes/{id}/inbound: raw RFC 5322 or JSON.
func (s *Server) inbound(w http.ResponseWriter, r *req) error {
	in, err := s.ownedInbox(r)
	if err != nil {
		return err
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > maxIdempotencyKey {
		return errf(http.StatusBadRequest, codeBadRequest, fmt.Sprintf("Idempotency-Key is longer than %d characters", maxIdempotencyKey))
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	var reply []byte
	var replayed bool
	switch {
	case mt == "message/rfc822":
		raw, err := readRawMessage(r, s.cfg.MaxMessageSize, s.deps.Ingest)
		if err != nil {
			return err
		}
		if len(raw) == 0 {
			return errf(http.StatusBadRequest, codeBadRequest, "request body is empty; a raw RFC 5322 message is expected")
		}
		reply, replayed, err = s.deps.Ingest.DeliverHTTPRaw(in, raw, idem)
		if err != nil {
			return inboundErr(err)
		}
	case mt == "application/json":
		body, err := readBody(r, s.maxInboundBody())
		if err != nil {
			return err
		}
		var j ingest.JSONInbound
		if err := decodeJSONBytes(body, &j); err != nil {
			return err
		}
		reply, replayed, err = s.deps.Ingest.DeliverJSON(in, &j, idem)
		if err != nil {
			return inboundErr(err)
		}
	default:
		return errf(http.StatusUnsupportedMediaType, codeUnsupportedType,
			"Content-Type must be message/rfc822 (a raw message) or application/json, not "+quoteShort(ct))
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)+1))
	w.WriteHeader(http.StatusAccepted)
	_, err = w.Write(append(reply, '\n'))
	return err
}

func inboundErr(err error) error {
	switch {
	case errors.Is(err, ingest.ErrTooLarge):
		return errf(http.StatusRequestEntityTooLarge, codeTooLarge, "the message is larger than --max-message-size")
	case errors.Is(err, ingest.ErrInvalid):
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, err.Error())
	case errors.Is(err, ingest.ErrIdempotencyMismatch):
		return errf(http.StatusUnprocessableEntity, codeIdempotencyMismatch,
			"this Idempotency-Key was used before with a different request body; use a new key for a new message")
	case errors.Is(err, store.ErrNotFound):
		return errf(http.StatusNotFound, codeNotFound, "inbox not found")
	}
	return err
}

// messageView is a message as the API shows it.
type messageView struct {
	ID           string           `json:"id"`
	InboxID      string           `json:"inboxId"`
	ThreadID     string           `json:"threadId"`
	RFCMessageID string           `json:"rfcMessageId"`
	From         string           `json:"from"`
	To           string           `json:"to"`
	Cc           []string         `json:"cc"`
	Subject      string           `json:"subject"`
	BodyText     string           `json:"bodyText"`
	BodyHTML     *string          `json:"bodyHtml"`
	Attachments  []attachmentView `json:"attachments"`
	// AttachmentsTruncated: the message had more MIME parts than
	// --max-mime-parts; the raw message has them all.
	AttachmentsTruncated bool   `json:"attachmentsTruncated,omitempty"`
	ReceivedAt           string `json:"receivedAt"`
}

type attachmentView struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	SizeBytes   int    `json:"sizeBytes"`
	URL         string `json:"url"`
}

func (s *Server) viewMessage(m store.Message) messageView {
	v := messageView{
		ID: m.ID, InboxID: m.InboxID, ThreadID: m.ThreadID, RFCMessageID: m.RFCMessageID,
		From: m.From, To: m.To, Cc: m.Cc, Subject: m.Subject, BodyText: m.BodyText,
		BodyHTML: strPtr(m.BodyHTML), ReceivedAt: apiTime(m.ReceivedAt), AttachmentsTruncated: m.AttachmentsTruncated,
		Attachments: make([]attachmentView, 0, len(m.Attachments)),
	}
	if v.Cc == nil {
		v.Cc = []string{}
	}
	for _, a := range m.Attachments {
		v.Attachments = append(v.Attachments, attachmentView{a.Filename, a.ContentType, a.SizeBytes, strings.TrimSuffix(s.cfg.PublicURL, "/") + ingest.AttachmentURL(m.ID, a.Filename)})
	}
	return v
}

func (s *Server) listMessages(w http.ResponseWriter, r *req) error {
	in, err := s.ownedInbox(r)
	if err != nil {
		return err
	}
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	ms, total, err := s.deps.DB.ListMessages(in.ID, store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	out := list[messageListItem]{Data: make([]messageListItem, 0, len(ms)), Total: total}
	for _, m := range ms {
		v := s.viewMessage(m)
		out.Data = append(out.Data, messageListItem{v.ID, v.InboxID, v.ThreadID, v.RFCMessageID, v.From, v.To, v.Cc,
			v.Subject, v.Attachments, v.AttachmentsTruncated, v.ReceivedAt})
	}
	return writeJSON(w, http.StatusOK, out)
}

// messageListItem is a message in GET /v1/inboxes/{id}/messages: the
// message without bodyText and bodyHtml (a list of 50 messages with
// their bodies can weigh megabytes); GET /v1/messages/{id} has them.
type messageListItem struct {
	ID                   string           `json:"id"`
	InboxID              string           `json:"inboxId"`
	ThreadID             string           `json:"threadId"`
	RFCMessageID         string           `json:"rfcMessageId"`
	From                 string           `json:"from"`
	To                   string           `json:"to"`
	Cc                   []string         `json:"cc"`
	Subject              string           `json:"subject"`
	Attachments          []attachmentView `json:"attachments"`
	AttachmentsTruncated bool             `json:"attachmentsTruncated,omitempty"`
	ReceivedAt           string           `json:"receivedAt"`
}

func (s *Server) getMessage(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Message, "message")
	if err != nil {
		return err
	}
	m, err := s.deps.DB.GetMessage(r.accountID, id)
	if err != nil {
		return mapStoreErr(err, "message "+id)
	}
	return writeJSON(w, http.StatusOK, s.viewMessage(m))
}

func (s *Server) getRaw(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Message, "message")
	if err != nil {
		return err
	}
	raw, err := s.deps.DB.GetRaw(r.accountID, id)
	if err != nil {
		return mapStoreErr(err, "message "+id)
	}
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(raw)
	return err
}

func (s *Server) getAttachment(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "messageId", ids.Message, "message")
	if err != nil {
		return err
	}
	name := r.param("filename")
	meta, data, err := s.deps.DB.GetAttachment(r.accountID, id, name)
	if err != nil {
		return mapStoreErr(err, "attachment "+quoteShort(name))
	}
	ct := meta.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(data)
	return err
}

// Events.

type eventSummaryView struct {
	ID            string  `json:"id"`
	Type          string  `json:"type"`
	InboxID       string  `json:"inboxId"`
	Status        string  `json:"status"`
	DeliveredVia  *string `json:"deliveredVia"`
	Attempts      int     `json:"attempts"`
	NextAttemptAt *string `json:"nextAttemptAt"`
	OccurredAt    string  `json:"occurredAt"`
}

func (s *Server) listEvents(w http.ResponseWriter, r *req) error {
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.EventFilter{InboxID: q.Get("inboxId"), Status: q.Get("status")}
	if f.InboxID != "" && !ids.Valid(ids.Inbox, f.InboxID) {
		return errf(http.StatusBadRequest, codeBadRequest, "malformed inboxId "+quoteShort(f.InboxID))
	}
	switch f.Status {
	case "", store.StatusPending, store.StatusDelivered, store.StatusFailed:
	default:
		return errf(http.StatusBadRequest, codeBadRequest, "status must be pending, delivered or failed, not "+quoteShort(f.Status))
	}
	evs, total, err := s.deps.DB.ListEvents(r.accountID, f, store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	out := list[eventSummaryView]{Data: make([]eventSummaryView, 0, len(evs)), Total: total}
	for _, e := range evs {
		t, _ := ids.Time(ids.Event, e.ID)
		out.Data = append(out.Data, eventSummaryView{
			ID: e.ID, Type: e.State.Type, InboxID: e.State.InboxID, Status: e.State.Status,
			DeliveredVia: strPtr(deliveredVia(e.State)), Attempts: e.State.Attempts,
			NextAttemptAt: msTime(e.State.NextAt), OccurredAt: apiTime(t),
		})
	}
	return writeJSON(w, http.StatusOK, out)
}

func deliveredVia(st store.EventState) string {
	if st.Status == store.StatusDelivered {
		return st.DeliveredVia
	}
	return ""
}

// attemptView is an attempt as the API shows it: its time in the API's
// format (store.Attempt's time.Time would marshal as RFC 3339 with a
// variable number of fraction digits).
type attemptView struct {
	N          int    `json:"n"`
	At         string `json:"at"`
	Channel    string `json:"channel"`
	OK         bool   `json:"ok"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

func viewAttempt(a store.Attempt) attemptView {
	return attemptView{N: a.N, At: apiTime(a.At), Channel: a.Channel, OK: a.OK,
		HTTPStatus: a.HTTPStatus, Error: a.Error, DurationMs: a.DurationMs}
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

func (s *Server) getEvent(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Event, "event")
	if err != nil {
		return err
	}
	ev, err := s.deps.DB.GetEvent(id)
	if err != nil || ev.AccountID != r.accountID {
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return errf(http.StatusNotFound, codeNotFound, "event "+id+" not found")
		}
		return err
	}
	st, err := s.deps.DB.GetEventState(r.accountID, id)
	if err != nil {
		return mapStoreErr(err, "event "+id)
	}
	stored, err := s.deps.DB.ListAttempts(id)
	if err != nil {
		return err
	}
	atts := make([]attemptView, 0, len(stored))
	for _, a := range stored {
		atts = append(atts, viewAttempt(a))
	}
	attempt, at := max(1, st.Attempts), ev.OccurredAt()
	if st.LastAt != 0 && st.Attempts > 0 {
		at = time.UnixMilli(st.LastAt) // the last attempt's; before any, when it occurred
	}
	payload := ev.AppendPayload(nil, attempt, at)
	return writeJSON(w, http.StatusOK, map[string]any{
		"event":         rawJSON(payload),
		"status":        st.Status,
		"deliveredVia":  strPtr(deliveredVia(st)),
		"attempts":      atts,
		"nextAttemptAt": msTime(st.NextAt),
		"ackedAt":       msTime(st.AckedAt),
	})
}

func (s *Server) redeliver(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Event, "event")
	if err != nil {
		return err
	}
	if err := s.deps.Delivery.Redeliver(r.accountID, id); err != nil {
		return mapStoreErr(err, "event "+id)
	}
	return writeJSON(w, http.StatusAccepted, map[string]string{"eventId": id, "status": store.StatusPending})
}

// Administration.

type accountView struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	APIKey    string `json:"apiKey,omitempty"`
	KeyID     string `json:"keyId,omitempty"`
	CreatedAt string `json:"createdAt"`
}

func (s *Server) adminCreateAccount(w http.ResponseWriter, r *req) error {
	var body struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	name := strings.TrimSpace(body.Name)
	if name == "" || len(name) > 200 || strings.ContainsAny(name, "\r\n") {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, "name is required: one line of at most 200 characters")
	}
	acc, key, plain, err := s.deps.DB.CreateAccount(name)
	if err != nil {
		return err
	}
	s.log.Info("account created", "account", acc.ID, "key", key.ID, "request_id", r.requestID)
	return writeJSON(w, http.StatusCreated, accountView{ID: acc.ID, Name: acc.Name, APIKey: plain, KeyID: key.ID, CreatedAt: apiTime(acc.CreatedAt)})
}

func (s *Server) adminListAccounts(w http.ResponseWriter, r *req) error {
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	accs, total, err := s.deps.DB.ListAccounts(store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	out := list[accountView]{Data: make([]accountView, 0, len(accs)), Total: total}
	for _, a := range accs {
		out.Data = append(out.Data, accountView{ID: a.ID, Name: a.Name, CreatedAt: apiTime(a.CreatedAt)})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminCreateKey(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Account, "account")
	if err != nil {
		return err
	}
	k, plain, err := s.deps.DB.CreateAPIKey(id)
	if err != nil {
		return mapStoreErr(err, "account "+id)
	}
	s.log.Info("api key created", "account", id, "key", k.ID, "request_id", r.requestID)
	return writeJSON(w, http.StatusCreated, map[string]string{"id": k.ID, "apiKey": plain, "accountId": id, "createdAt": apiTime(k.CreatedAt)})
}

type keyView struct {
	ID         string  `json:"id"`
	AccountID  string  `json:"accountId"`
	CreatedAt  string  `json:"createdAt"`
	LastUsedAt *string `json:"lastUsedAt"`
	Last4      string  `json:"last4"`
}

func (s *Server) adminListKeys(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Account, "account")
	if err != nil {
		return err
	}
	keys, err := s.deps.DB.ListAPIKeys(id)
	if err != nil {
		return mapStoreErr(err, "account "+id)
	}
	out := list[keyView]{Data: make([]keyView, 0, len(keys)), Total: len(keys)}
	for _, k := range keys {
		v := keyView{ID: k.ID, AccountID: k.AccountID, CreatedAt: apiTime(k.CreatedAt), Last4: k.Last4}
		if !k.LastUsedAt.IsZero() {
			t := apiTime(k.LastUsedAt)
			v.LastUsedAt = &t
		}
		out.Data = append(out.Data, v)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminRevokeKey(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "keyId", ids.APIKey, "api key")
	if err != nil {
		return err
	}
	k, err := s.deps.DB.RevokeAPIKey(id)
	if err != nil {
		return mapStoreErr(err, "api key "+id)
	}
	n := s.hub.KeyRevoked(k.ID)
	s.log.Info("api key revoked", "account", k.AccountID, "key", k.ID, "websockets_closed", n, "request_id", r.requestID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) metricsHandler(w http.ResponseWriter, _ *req) error {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	writers := []func(io.Writer){s.cfg.Metrics.WritePrometheus}
	for _, set := range s.cfg.ExtraMetrics {
		writers = append(writers, set.WritePrometheus)
	}
	writers = append(writers, s.deps.DB.WriteMetrics, s.writeDueMetrics, metricsWriteProcess)
	promtext.Write(w, writers...)
	return nil
}
