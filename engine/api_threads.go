package engine

import (
	"net/http"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// Threads, as OpenMail documents them (API.md): an inbox's messages
// grouped by In-Reply-To/References, with a read flag.

// threads is the store's thread view: 501 on a store without one (both
// of mailwire's stores have one).
func (s *Server) threads() (store.Threads, error) {
	if ts, ok := s.deps.DB.(store.Threads); ok {
		return ts, nil
	}
	return nil, errf(http.StatusNotImplemented, codeNotImplemented, "threads are not available on this server's store")
}

// threadView is a thread as the API shows it (OpenMail's Thread).
type threadView struct {
	ID            string `json:"id"`
	Subject       string `json:"subject"`
	IsRead        bool   `json:"isRead"`
	MessageCount  int    `json:"messageCount"`
	LastMessageAt string `json:"lastMessageAt"`
	CreatedAt     string `json:"createdAt"`
}

func viewThread(t store.Thread) threadView {
	return threadView{ID: t.ID, Subject: t.Subject, IsRead: t.IsRead, MessageCount: t.MessageCount,
		LastMessageAt: apiTime(t.LastMessageAt), CreatedAt: apiTime(t.CreatedAt)}
}

// listThreads is GET /v1/inboxes/{id}/threads?is_read=: latest activity
// first.
func (s *Server) listThreads(w http.ResponseWriter, r *req) error {
	in, err := s.ownedInbox(r)
	if err != nil {
		return err
	}
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	var f store.ThreadFilter
	switch v := r.URL.Query().Get("is_read"); v {
	case "":
	case "true", "false":
		read := v == "true"
		f.IsRead = &read
	default:
		return errf(http.StatusBadRequest, codeBadRequest, "is_read must be true or false, not "+quoteShort(v))
	}
	th, err := s.threads()
	if err != nil {
		return err
	}
	ts, total, err := th.ListThreads(in.ID, f, store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	out := list[threadView]{Data: make([]threadView, 0, len(ts)), Total: total}
	for _, t := range ts {
		out.Data = append(out.Data, viewThread(t))
	}
	return writeJSON(w, http.StatusOK, out)
}

// threadMessage is a message in a thread: with OpenMail's direction,
// always "inbound" (mailwire receives mail, it sends none).
type threadMessage struct {
	messageView
	Direction string `json:"direction"`
}

const directionInbound = "inbound"

// threadMessagesView is GET /v1/threads/{id}/messages's answer.
type threadMessagesView struct {
	ThreadID string          `json:"threadId"`
	Subject  string          `json:"subject"`
	IsRead   bool            `json:"isRead"`
	Data     []threadMessage `json:"data"`
	// Total is the thread's message count (data is a page of it).
	Total int `json:"total"`
}

// threadMessages is GET /v1/threads/{id}/messages: oldest first. OpenMail
// returns the whole thread; here ?limit (default and most 100) and
// ?offset page long ones.
func (s *Server) threadMessages(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Thread, "thread")
	if err != nil {
		return err
	}
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("limit") == "" {
		limit = maxListLimit
	}
	th, err := s.threads()
	if err != nil {
		return err
	}
	t, err := th.GetThread(r.accountID, id)
	if err != nil {
		return mapStoreErr(err, "thread "+id)
	}
	ms, total, err := th.ThreadMessages(r.accountID, id, store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return mapStoreErr(err, "thread "+id)
	}
	out := threadMessagesView{ThreadID: t.ID, Subject: t.Subject, IsRead: t.IsRead, Data: make([]threadMessage, 0, len(ms)), Total: total}
	for _, m := range ms {
		out.Data = append(out.Data, threadMessage{s.viewMessage(m), directionInbound})
	}
	return writeJSON(w, http.StatusOK, out)
}

// patchThread is PATCH /v1/threads/{id} {"is_read": bool}.
func (s *Server) patchThread(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Thread, "thread")
	if err != nil {
		return err
	}
	var body struct {
		IsRead *bool `json:"is_read"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.IsRead == nil {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, "is_read (true or false) is required")
	}
	th, err := s.threads()
	if err != nil {
		return err
	}
	if err := th.MarkThreadRead(r.accountID, id, *body.IsRead); err != nil {
		return mapStoreErr(err, "thread "+id)
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
