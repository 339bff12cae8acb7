package cluster_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// A thread's read state is the cluster's, not a node's: marked read
// through node A it is read on node B at once; a reply arriving through
// node B makes it unread on A; marked unread through B it is unread on A.
// Its subject (longer than the log's subject header keeps) is whole on
// every node.
func TestThreadReadStateAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	acc, other := a.NewAccount("acme"), b.NewAccount("other")
	inbox := a.NewInbox(acc.Key, "agent")
	knows := func(n *testserver.Server, key string) {
		t.Helper()
		// A new key reaches the other nodes through the directory watch.
		testserver.WaitFor(t, 10*time.Second, "the key known on every node", func() bool {
			st, _, _ := n.Do("GET", "/v1/inboxes", key, nil)
			return st == http.StatusOK
		})
	}
	knows(b, acc.Key)
	subject := "Bestellung " + strings.Repeat("Größe ✓ ", 60) + "Ende"
	var first, reply struct{ MessageID, ThreadID string }
	a.MustJSON("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]any{"from": "c@example.com", "subject": subject,
		"text": "where is it?", "messageId": "<order-1@example.com>"}, http.StatusAccepted, &first)

	type threadList struct {
		Data []struct {
			ID           string `json:"id"`
			Subject      string `json:"subject"`
			IsRead       bool   `json:"isRead"`
			MessageCount int    `json:"messageCount"`
		} `json:"data"`
		Total int `json:"total"`
	}
	type threadMessages struct {
		ThreadID string `json:"threadId"`
		Subject  string `json:"subject"`
		IsRead   bool   `json:"isRead"`
		Total    int    `json:"total"`
	}
	var tm threadMessages
	// Node B finds a thread started through A a moment ago.
	b.MustJSON("GET", "/v1/threads/"+first.ThreadID+"/messages", acc.Key, nil, http.StatusOK, &tm)
	if tm.ThreadID != first.ThreadID || tm.Subject != subject || tm.IsRead || tm.Total != 1 {
		t.Fatalf("thread through node B: %+v", tm)
	}

	a.MustJSON("PATCH", "/v1/threads/"+first.ThreadID, acc.Key, map[string]any{"is_read": true}, http.StatusOK, nil)
	var l threadList
	b.MustJSON("GET", "/v1/inboxes/"+inbox+"/threads?is_read=true", acc.Key, nil, http.StatusOK, &l)
	if l.Total != 1 || l.Data[0].ID != first.ThreadID || !l.Data[0].IsRead || l.Data[0].Subject != subject {
		t.Fatalf("read through A, on B: %+v", l)
	}
	b.MustJSON("GET", "/v1/threads/"+first.ThreadID+"/messages", acc.Key, nil, http.StatusOK, &tm)
	if !tm.IsRead {
		t.Fatalf("read through A, B's thread messages: %+v", tm)
	}

	// A reply through B: unread on A.
	b.MustJSON("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]any{"from": "c@example.com", "subject": "Re: " + subject,
		"text": "still waiting", "inReplyTo": "<order-1@example.com>"}, http.StatusAccepted, &reply)
	if reply.ThreadID != first.ThreadID {
		t.Fatalf("the reply through B is in thread %s, want %s", reply.ThreadID, first.ThreadID)
	}
	// Node A has the reply once it serves it (a read of a recent id waits
	// for the log); its thread list is then current too.
	a.MustJSON("GET", "/v1/messages/"+reply.MessageID, acc.Key, nil, http.StatusOK, nil)
	a.MustJSON("GET", "/v1/inboxes/"+inbox+"/threads", acc.Key, nil, http.StatusOK, &l)
	if l.Total != 1 || l.Data[0].IsRead || l.Data[0].MessageCount != 2 || l.Data[0].Subject != subject {
		t.Fatalf("after a reply through B, on A: %+v", l)
	}

	// Read through B, then unread through A: each seen on the other node.
	b.MustJSON("PATCH", "/v1/threads/"+first.ThreadID, acc.Key, map[string]any{"is_read": true}, http.StatusOK, nil)
	a.MustJSON("GET", "/v1/threads/"+first.ThreadID+"/messages", acc.Key, nil, http.StatusOK, &tm)
	if !tm.IsRead || tm.Total != 2 {
		t.Fatalf("read through B, on A: %+v", tm)
	}
	a.MustJSON("PATCH", "/v1/threads/"+first.ThreadID, acc.Key, map[string]any{"is_read": false}, http.StatusOK, nil)
	b.MustJSON("GET", "/v1/inboxes/"+inbox+"/threads?is_read=false", acc.Key, nil, http.StatusOK, &l)
	if l.Total != 1 || l.Data[0].IsRead {
		t.Fatalf("unread through A, on B: %+v", l)
	}

	// Another account's key finds nothing on either node.
	for _, n := range c.nodes {
		knows(n, other.Key)
		n.MustJSON("GET", "/v1/threads/"+first.ThreadID+"/messages", other.Key, nil, http.StatusNotFound, nil)
		n.MustJSON("PATCH", "/v1/threads/"+first.ThreadID, other.Key, map[string]any{"is_read": true}, http.StatusNotFound, nil)
	}
}
