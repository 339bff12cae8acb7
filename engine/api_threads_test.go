package engine_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

type threadItem struct {
	ID            string `json:"id"`
	Subject       string `json:"subject"`
	IsRead        bool   `json:"isRead"`
	MessageCount  int    `json:"messageCount"`
	LastMessageAt string `json:"lastMessageAt"`
	CreatedAt     string `json:"createdAt"`
}

type threadMessages struct {
	ThreadID string `json:"threadId"`
	Subject  string `json:"subject"`
	IsRead   bool   `json:"isRead"`
	Data     []struct {
		message
		Direction string `json:"direction"`
	} `json:"data"`
	Total int `json:"total"`
}

// The thread routes as OpenMail documents them: list per inbox (latest
// activity first, is_read filter), a thread's messages oldest first with
// their direction, PATCH is_read; a new message unreads a read thread.
func TestAPIThreads(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a, b := s.NewAccount("a"), s.NewAccount("b")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "threads"})
	first, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "Order 7", "text": "where?", "messageId": "<o7@example.com>"})
	other, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "d@example.com", "subject": "Hello", "text": "hi"})
	re, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "Re: Order 7", "text": "still?", "inReplyTo": "<o7@example.com>"})
	if re.ThreadID != first.ThreadID || other.ThreadID == first.ThreadID {
		t.Fatalf("threading: first %s, reply %s, other %s", first.ThreadID, re.ThreadID, other.ThreadID)
	}

	var l listOf[threadItem]
	_, body, _ := call(s, "GET", "/v1/inboxes/"+in.ID+"/threads", a.Key, nil)
	mustDecode(t, "threads", body, &l)
	if l.Total != 2 || len(l.Data) != 2 || l.Data[0].ID != first.ThreadID || l.Data[1].ID != other.ThreadID {
		t.Fatalf("threads (latest activity first): %s", body)
	}
	var items []json.RawMessage
	var env struct{ Data []json.RawMessage }
	mustDecode(t, "threads", body, &env)
	items = env.Data
	if keys := jsonKeys(t, items[0]); !reflect.DeepEqual(keys, []string{"id", "subject", "isRead", "messageCount", "lastMessageAt", "createdAt"}) {
		t.Errorf("thread fields %v", keys)
	}
	th := l.Data[0]
	if th.Subject != "Order 7" || th.MessageCount != 2 || th.IsRead || !apiTimeRE.MatchString(th.LastMessageAt) || !apiTimeRE.MatchString(th.CreatedAt) || th.LastMessageAt < th.CreatedAt {
		t.Errorf("thread %+v", th)
	}

	var tm threadMessages
	mustGet(t, s, "/v1/threads/"+first.ThreadID+"/messages", a.Key, &tm)
	if tm.ThreadID != first.ThreadID || tm.Subject != "Order 7" || tm.IsRead || tm.Total != 2 || len(tm.Data) != 2 ||
		tm.Data[0].ID != first.MessageID || tm.Data[1].ID != re.MessageID || tm.Data[0].Direction != "inbound" || tm.Data[1].Subject != "Re: Order 7" {
		t.Fatalf("thread messages (oldest first, inbound): %+v", tm)
	}

	// PATCH is_read, the filter, and a new message unreading the thread.
	var ok map[string]any
	s.MustJSON("PATCH", "/v1/threads/"+first.ThreadID, a.Key, map[string]any{"is_read": true}, http.StatusOK, &ok)
	if ok["ok"] != true || len(ok) != 1 {
		t.Errorf("PATCH answer %v, want {\"ok\":true}", ok)
	}
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/threads?is_read=true", a.Key, &l)
	if l.Total != 1 || l.Data[0].ID != first.ThreadID || !l.Data[0].IsRead {
		t.Fatalf("is_read=true: %+v", l)
	}
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/threads?is_read=false", a.Key, &l)
	if l.Total != 1 || l.Data[0].ID != other.ThreadID {
		t.Fatalf("is_read=false: %+v", l)
	}
	mustGet(t, s, "/v1/threads/"+first.ThreadID+"/messages", a.Key, &tm)
	if !tm.IsRead {
		t.Errorf("thread messages after PATCH: isRead false")
	}
	inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "Re: Re: Order 7", "text": "hello?", "inReplyTo": "<o7@example.com>"})
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/threads?is_read=true", a.Key, &l)
	if l.Total != 0 {
		t.Fatalf("a new message must unread the thread: %+v", l)
	}
	mustGet(t, s, "/v1/inboxes/"+in.ID+"/threads?limit=1&offset=1", a.Key, &l)
	if l.Total != 2 || len(l.Data) != 1 || l.Data[0].ID != other.ThreadID {
		t.Fatalf("page 2: %+v", l)
	}
	s.MustJSON("PATCH", "/v1/threads/"+first.ThreadID, a.Key, map[string]any{"is_read": false}, http.StatusOK, nil)

	// Errors; another account sees nothing.
	checkErr(t, s, "GET", "/v1/inboxes/"+in.ID+"/threads?is_read=yes", a.Key, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "PATCH", "/v1/threads/"+first.ThreadID, a.Key, map[string]any{}, http.StatusUnprocessableEntity, "invalid_value")
	checkErr(t, s, "PATCH", "/v1/threads/"+first.ThreadID, a.Key, map[string]any{"is_read": "yes"}, http.StatusBadRequest, "invalid_json")
	checkErr(t, s, "PATCH", "/v1/threads/"+first.ThreadID, a.Key, map[string]any{"isRead": true}, http.StatusBadRequest, "invalid_json")
	checkErr(t, s, "GET", "/v1/threads/thr_nope/messages", a.Key, nil, http.StatusBadRequest, "bad_request")
	checkErr(t, s, "GET", "/v1/threads/thr_01JD7Z8Q7W3M1X5K2B9N4C6V8P/messages", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/threads/"+first.ThreadID+"/messages", b.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "PATCH", "/v1/threads/"+first.ThreadID, b.Key, map[string]any{"is_read": true}, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/inboxes/"+in.ID+"/threads", b.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/v1/threads/"+first.ThreadID+"/messages", "", nil, http.StatusUnauthorized, "unauthorized")

	// Deleting the inbox deletes its threads.
	s.MustJSON("DELETE", "/v1/inboxes/"+in.ID, a.Key, nil, http.StatusNoContent, nil)
	checkErr(t, s, "GET", "/v1/threads/"+first.ThreadID+"/messages", a.Key, nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "PATCH", "/v1/threads/"+other.ThreadID, a.Key, map[string]any{"is_read": true}, http.StatusNotFound, "not_found")
}
