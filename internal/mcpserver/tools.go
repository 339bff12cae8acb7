package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mailwire/mailwire/internal/pdftext"
)

// Limits of the tools (one place; each is in a tool's description or
// error text where the model needs it).
const (
	// DefaultWait is wait_for_email's timeout when none is given.
	DefaultWait = 30 * time.Second
	// pullWaitMax is the longest wait one pull request may ask for
	// (API.md: ≤ 60 s); a longer wait_for_email makes several.
	pullWaitMax = 60 * time.Second
	// maxBodyText is the most of a message body a tool returns (bytes);
	// the rest is cut on a UTF-8 boundary and flagged.
	maxBodyText = 64 << 10
	// maxAttachmentText is the most text get_attachment returns.
	maxAttachmentText = 1 << 20
	// maxCursors bounds the stdio server's remembered cursors (one per
	// distinct filter); past it they are forgotten (the next call waits
	// from "now").
	maxCursors = 256
)

// Options configure a server's tools. The zero value is usable.
type Options struct {
	// Version is reported to clients (serverInfo.version). Default "dev".
	Version string
	// MaxWait is the longest wait_for_email timeout accepted. Default
	// 50 s: over HTTP a call must end before the server's write deadline
	// (--http-idle-timeout, 60 s by default).
	MaxWait time.Duration
	// PDF extracts the text of PDF attachments; nil returns their
	// metadata only.
	PDF *pdftext.Extractor
}

func (o Options) withDefaults() Options {
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 50 * time.Second
	}
	return o
}

// clientFunc returns the REST client a tool call acts with.
type clientFunc func(ctx context.Context, req *mcp.CallToolRequest) (*apiClient, error)

// tools holds what the tool handlers share.
type tools struct {
	opts   Options
	client clientFunc
	// publicBase prefixes attachment URLs ("" leaves them as API paths).
	publicBase string
	// cursors remembers wait_for_email's position per filter, for a
	// server with one caller (stdio); nil over HTTP, where the caller
	// passes the cursor back.
	cursors *cursorMemory
}

const instructions = `Tools to read the email of a mailwire account: list its inboxes, wait for the next email (wait_for_email blocks on the server until one arrives), read threads and messages, mark threads read, and read attachments (text, or the extracted text of a PDF). Ids: inboxes inb_…, threads thr_…, messages msg_…, events evt_….`

func newServer(t *tools) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mailwire", Version: t.opts.Version}, &mcp.ServerOptions{
		Instructions: instructions,
		Capabilities: &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}},
	})
	ro := &mcp.ToolAnnotations{ReadOnlyHint: true}
	mcp.AddTool(s, &mcp.Tool{Name: "list_inboxes", Annotations: ro,
		Description: "List the inboxes of the account (id and email address). Use an inbox id with wait_for_email or list_threads."},
		handle(t, t.listInboxes))
	mcp.AddTool(s, &mcp.Tool{Name: "wait_for_email", Annotations: ro,
		Description: fmt.Sprintf("Wait for the next email to arrive and return it. Optional filters: inbox_id, sender and subject (case-insensitive substrings). "+
			"It returns the first matching message received after cursor; without a cursor, after the call began (or, in a local session, after the last message this tool returned for the same filters). "+
			"It blocks on the server, up to timeout_seconds (default %d, at most %d); arrived is false when the time passed. Pass the returned cursor to the next call to miss nothing.",
			int(DefaultWait/time.Second), int(t.opts.MaxWait/time.Second))},
		handle(t, t.waitForEmail))
	mcp.AddTool(s, &mcp.Tool{Name: "list_threads", Annotations: ro,
		Description: "List an inbox's conversation threads, latest activity first (subject, read flag, message count). unread_only keeps the unread ones."},
		handle(t, t.listThreads))
	mcp.AddTool(s, &mcp.Tool{Name: "read_thread", Annotations: ro,
		Description: "Read a thread: its messages oldest first, with their bodies and attachment names."},
		handle(t, t.readThread))
	mcp.AddTool(s, &mcp.Tool{Name: "read_message", Annotations: ro,
		Description: "Read one message: sender, recipients, subject, text body and attachments."},
		handle(t, t.readMessage))
	mcp.AddTool(s, &mcp.Tool{Name: "mark_thread_read",
		Annotations: &mcp.ToolAnnotations{IdempotentHint: true, DestructiveHint: new(bool)},
		Description: "Mark a thread read (or unread with read=false). A later message makes it unread again."},
		handle(t, t.markThreadRead))
	mcp.AddTool(s, &mcp.Tool{Name: "get_attachment", Annotations: ro,
		Description: "Read an attachment of a message: the content of a text attachment, the extracted text of a PDF, otherwise its type, size and download URL."},
		handle(t, t.getAttachment))
	return s
}

// handle adapts a tool function: it gets the caller's REST client and
// turns REST errors into tool errors the model can act on (IsError
// results, never protocol errors).
func handle[In, Out any](t *tools, f func(context.Context, *apiClient, In) (Out, error)) mcp.ToolHandlerFor[In, Out] {
	return func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		var zero Out
		c, err := t.client(ctx, req)
		if err != nil {
			return nil, zero, err
		}
		out, err := f(ctx, c, in)
		if err != nil {
			return nil, zero, explain(err)
		}
		return nil, out, nil
	}
}

// explain turns an error into the text a model reads.
func explain(err error) error {
	switch errCode(err) {
	case "":
		return err
	case "not_found":
		return fmt.Errorf("%w (ids come from list_inboxes, list_threads, read_thread or wait_for_email; another account's ids are never found)", err)
	case "unauthorized":
		return fmt.Errorf("%w (the API key configured for this MCP server is missing, unknown or revoked)", err)
	case "too_many_requests":
		return fmt.Errorf("%w (too many wait_for_email calls are waiting for this account; retry after one returns)", err)
	case "not_implemented":
		return fmt.Errorf("%w (threads are not available on this server; use wait_for_email and read_message)", err)
	}
	return err
}

// ---- the REST answers (the subset the tools use) --------------------

type restList[T any] struct {
	Data  []T `json:"data"`
	Total int `json:"total"`
}

type restInbox struct {
	ID          string  `json:"id"`
	Address     string  `json:"address"`
	MailboxName string  `json:"mailboxName"`
	DisplayName *string `json:"displayName"`
	CreatedAt   string  `json:"createdAt"`
}

type restAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	SizeBytes   int    `json:"sizeBytes"`
	URL         string `json:"url"`
}

type restMessage struct {
	ID          string           `json:"id"`
	InboxID     string           `json:"inboxId"`
	ThreadID    string           `json:"threadId"`
	From        string           `json:"from"`
	To          string           `json:"to"`
	Cc          []string         `json:"cc"`
	Subject     string           `json:"subject"`
	BodyText    string           `json:"bodyText"`
	BodyHTML    *string          `json:"bodyHtml"`
	Attachments []restAttachment `json:"attachments"`
	ReceivedAt  string           `json:"receivedAt"`
	Direction   string           `json:"direction"`
}

type restThread struct {
	ID            string `json:"id"`
	Subject       string `json:"subject"`
	IsRead        bool   `json:"isRead"`
	MessageCount  int    `json:"messageCount"`
	LastMessageAt string `json:"lastMessageAt"`
}

// ---- tool inputs and outputs (their JSON schemas are inferred; a
// field without omitempty is required) ---------------------------------

type ListInboxesIn struct {
	Limit  int `json:"limit,omitempty" jsonschema:"how many inboxes, 1-100 (default 100)"`
	Offset int `json:"offset,omitempty" jsonschema:"skip this many (paging)"`
}

type Inbox struct {
	ID          string `json:"id" jsonschema:"inbox id (inb_…)"`
	Address     string `json:"address" jsonschema:"the inbox's email address"`
	DisplayName string `json:"display_name,omitempty"`
	CreatedAt   string `json:"created_at"`
}

type ListInboxesOut struct {
	Inboxes []Inbox `json:"inboxes"`
	Total   int     `json:"total" jsonschema:"how many inboxes the account has"`
}

func (t *tools) listInboxes(ctx context.Context, c *apiClient, in ListInboxesIn) (ListInboxesOut, error) {
	q, err := pageQuery(in.Limit, in.Offset)
	if err != nil {
		return ListInboxesOut{}, err
	}
	var l restList[restInbox]
	if err := c.do(ctx, "GET", "/v1/inboxes", q, nil, &l); err != nil {
		return ListInboxesOut{}, err
	}
	out := ListInboxesOut{Inboxes: make([]Inbox, 0, len(l.Data)), Total: l.Total}
	for _, i := range l.Data {
		v := Inbox{ID: i.ID, Address: i.Address, CreatedAt: i.CreatedAt}
		if i.DisplayName != nil {
			v.DisplayName = *i.DisplayName
		}
		out.Inboxes = append(out.Inboxes, v)
	}
	return out, nil
}

func pageQuery(limit, offset int) (url.Values, error) {
	if limit < 0 || limit > 100 {
		return nil, fmt.Errorf("limit must be 1-100, got %d", limit)
	}
	if offset < 0 {
		return nil, fmt.Errorf("offset must not be negative, got %d", offset)
	}
	if limit == 0 {
		limit = 100
	}
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if offset > 0 {
		q.Set("offset", fmt.Sprint(offset))
	}
	return q, nil
}

// Message is a message as the tools show it.
type Message struct {
	ID         string       `json:"id" jsonschema:"message id (msg_…)"`
	InboxID    string       `json:"inbox_id"`
	ThreadID   string       `json:"thread_id"`
	From       string       `json:"from"`
	To         string       `json:"to"`
	Cc         []string     `json:"cc"`
	Subject    string       `json:"subject"`
	Text       string       `json:"text" jsonschema:"the text body (from the HTML when the message has no text part)"`
	TextCut    bool         `json:"text_truncated,omitempty" jsonschema:"the body was longer than 64 KiB and was cut"`
	HasHTML    bool         `json:"has_html"`
	Files      []Attachment `json:"attachments"`
	ReceivedAt string       `json:"received_at"`
	Direction  string       `json:"direction,omitempty" jsonschema:"inbound (in a thread)"`
}

// Attachment is an attachment's metadata.
type Attachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	SizeBytes   int    `json:"size_bytes"`
}

func viewMessage(m restMessage) Message {
	v := Message{ID: m.ID, InboxID: m.InboxID, ThreadID: m.ThreadID, From: m.From, To: m.To, Cc: m.Cc,
		Subject: m.Subject, HasHTML: m.BodyHTML != nil, ReceivedAt: m.ReceivedAt, Direction: m.Direction,
		Files: make([]Attachment, 0, len(m.Attachments))}
	if v.Cc == nil {
		v.Cc = []string{}
	}
	v.Text, v.TextCut = cutText(m.BodyText, maxBodyText)
	for _, a := range m.Attachments {
		v.Files = append(v.Files, Attachment{a.Filename, a.ContentType, a.SizeBytes})
	}
	return v
}

// cutText cuts s to at most n bytes on a rune boundary, valid UTF-8.
func cutText(s string, n int) (string, bool) {
	cut := false
	if len(s) > n {
		for n > 0 && s[n]&0xc0 == 0x80 {
			n--
		}
		s, cut = s[:n], true
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s, cut
}

type WaitForEmailIn struct {
	InboxID        string `json:"inbox_id,omitempty" jsonschema:"only mail to this inbox (inb_…); default any inbox of the account"`
	Sender         string `json:"sender,omitempty" jsonschema:"only mail whose From contains this (case-insensitive), e.g. an address or a domain"`
	Subject        string `json:"subject,omitempty" jsonschema:"only mail whose subject contains this (case-insensitive)"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty" jsonschema:"how long to wait in seconds (default 30)"`
	Cursor         string `json:"cursor,omitempty" jsonschema:"the cursor a previous wait_for_email returned: wait for mail after it"`
	Ack            bool   `json:"ack,omitempty" jsonschema:"acknowledge the returned email's event, so it counts as delivered (set it when this agent is the account's only consumer)"`
}

type WaitForEmailOut struct {
	Arrived bool     `json:"arrived" jsonschema:"false when the timeout passed without a matching email"`
	Message *Message `json:"message,omitempty" jsonschema:"the email, when one arrived"`
	EventID string   `json:"event_id,omitempty" jsonschema:"the event that announced it (evt_…)"`
	Cursor  string   `json:"cursor" jsonschema:"pass it to the next wait_for_email to continue right after this point"`
}

// pullPage is GET /v1/events/stream's answer, with the payload fields the
// filters need.
type pullPage struct {
	Data []struct {
		EventID string `json:"event_id"`
		InboxID string `json:"inbox_id"`
		Message struct {
			ID      string `json:"id"`
			From    string `json:"from"`
			Subject string `json:"subject"`
		} `json:"message"`
	} `json:"data"`
	Cursor string `json:"cursor"`
}

// waitForEmail reads the account's message.received events after the
// cursor through the pull API, which holds each request on the server
// until an event is stored or its wait passes: a long poll, no loop of
// short requests. Events that do not match sender or subject are
// skipped (the cursor moves past them); the first that matches ends the
// call, and the cursor stops at it, so the next call continues right
// after it.
func (t *tools) waitForEmail(ctx context.Context, c *apiClient, in WaitForEmailIn) (WaitForEmailOut, error) {
	timeout := time.Duration(in.TimeoutSeconds) * time.Second
	switch {
	case in.TimeoutSeconds < 0 || timeout > t.opts.MaxWait:
		return WaitForEmailOut{}, fmt.Errorf("timeout_seconds must be 0-%d, got %d", int(t.opts.MaxWait/time.Second), in.TimeoutSeconds)
	case in.TimeoutSeconds == 0:
		timeout = min(DefaultWait, t.opts.MaxWait)
	}
	if in.Cursor != "" && !strings.HasPrefix(in.Cursor, "evt_") {
		return WaitForEmailOut{}, fmt.Errorf("cursor must be a cursor returned by wait_for_email (evt_…), got %q", in.Cursor)
	}
	deadline := time.Now().Add(timeout)
	filter := cursorKey{in.InboxID, strings.ToLower(in.Sender), strings.ToLower(in.Subject)}
	cursor := in.Cursor
	if cursor == "" && t.cursors != nil {
		cursor = t.cursors.get(filter)
	}
	q := url.Values{"types": {"message.received"}, "limit": {"100"}}
	if in.InboxID != "" {
		q.Set("inboxId", in.InboxID)
	}
	for {
		wait := min(max(time.Until(deadline), 0), pullWaitMax)
		q.Set("wait", fmt.Sprintf("%dms", wait.Milliseconds()))
		if cursor != "" {
			q.Set("after", cursor) // none: events stored from now on
		}
		var p pullPage
		if err := c.do(ctx, "GET", "/v1/events/stream", q, nil, &p); err != nil {
			return WaitForEmailOut{}, err
		}
		for _, e := range p.Data {
			cursor = e.EventID
			if !contains(e.Message.From, filter.sender) || !contains(e.Message.Subject, filter.subject) {
				continue
			}
			t.cursors.set(filter, cursor)
			var m restMessage
			if err := c.do(ctx, "GET", "/v1/messages/"+url.PathEscape(e.Message.ID), nil, nil, &m); err != nil {
				return WaitForEmailOut{}, err
			}
			if in.Ack {
				if err := c.do(ctx, "POST", "/v1/events/ack", nil, map[string]any{"eventIds": []string{e.EventID}}, nil); err != nil {
					return WaitForEmailOut{}, fmt.Errorf("the email arrived (%s) but its event could not be acknowledged: %w", m.ID, err)
				}
			}
			v := viewMessage(m)
			return WaitForEmailOut{Arrived: true, Message: &v, EventID: e.EventID, Cursor: cursor}, nil
		}
		cursor = p.Cursor
		t.cursors.set(filter, cursor)
		if len(p.Data) == 0 && !time.Now().Before(deadline) {
			return WaitForEmailOut{Cursor: cursor}, nil
		}
		if err := ctx.Err(); err != nil {
			return WaitForEmailOut{}, err
		}
	}
}

func contains(s, lowerSub string) bool {
	return lowerSub == "" || strings.Contains(strings.ToLower(s), lowerSub)
}

// cursorKey is one set of wait_for_email filters: a cursor is only good
// for the filters that moved it (it skips what they did not match).
type cursorKey struct{ inbox, sender, subject string }

type cursorMemory struct {
	mu sync.Mutex
	m  map[cursorKey]string
}

func (c *cursorMemory) get(k cursorKey) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *cursorMemory) set(k cursorKey, v string) {
	if c == nil || v == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= maxCursors {
		clear(c.m)
	}
	c.m[k] = v
}

type ListThreadsIn struct {
	InboxID    string `json:"inbox_id" jsonschema:"the inbox (inb_…)"`
	UnreadOnly bool   `json:"unread_only,omitempty" jsonschema:"only threads not marked read"`
	Limit      int    `json:"limit,omitempty" jsonschema:"how many threads, 1-100 (default 100)"`
	Offset     int    `json:"offset,omitempty" jsonschema:"skip this many (paging)"`
}

type Thread struct {
	ID            string `json:"id" jsonschema:"thread id (thr_…)"`
	Subject       string `json:"subject"`
	IsRead        bool   `json:"is_read"`
	MessageCount  int    `json:"message_count"`
	LastMessageAt string `json:"last_message_at"`
}

type ListThreadsOut struct {
	Threads []Thread `json:"threads"`
	Total   int      `json:"total" jsonschema:"how many threads match"`
}

func (t *tools) listThreads(ctx context.Context, c *apiClient, in ListThreadsIn) (ListThreadsOut, error) {
	if err := checkID("inbox_id", in.InboxID, "inb_"); err != nil {
		return ListThreadsOut{}, err
	}
	q, err := pageQuery(in.Limit, in.Offset)
	if err != nil {
		return ListThreadsOut{}, err
	}
	if in.UnreadOnly {
		q.Set("is_read", "false")
	}
	var l restList[restThread]
	if err := c.do(ctx, "GET", "/v1/inboxes/"+url.PathEscape(in.InboxID)+"/threads", q, nil, &l); err != nil {
		return ListThreadsOut{}, err
	}
	out := ListThreadsOut{Threads: make([]Thread, 0, len(l.Data)), Total: l.Total}
	for _, th := range l.Data {
		out.Threads = append(out.Threads, Thread{th.ID, th.Subject, th.IsRead, th.MessageCount, th.LastMessageAt})
	}
	return out, nil
}

func checkID(field, v, prefix string) error {
	if !strings.HasPrefix(v, prefix) || len(v) > 64 {
		return fmt.Errorf("%s must be an id starting with %s, got %q", field, prefix, v)
	}
	return nil
}

type ReadThreadIn struct {
	ThreadID string `json:"thread_id" jsonschema:"the thread (thr_…)"`
}

type ReadThreadOut struct {
	ThreadID string    `json:"thread_id"`
	Subject  string    `json:"subject"`
	IsRead   bool      `json:"is_read"`
	Messages []Message `json:"messages" jsonschema:"oldest first"`
	Total    int       `json:"total" jsonschema:"the thread's message count (at most 100 are returned)"`
}

func (t *tools) readThread(ctx context.Context, c *apiClient, in ReadThreadIn) (ReadThreadOut, error) {
	if err := checkID("thread_id", in.ThreadID, "thr_"); err != nil {
		return ReadThreadOut{}, err
	}
	var r struct {
		ThreadID string        `json:"threadId"`
		Subject  string        `json:"subject"`
		IsRead   bool          `json:"isRead"`
		Data     []restMessage `json:"data"`
		Total    int           `json:"total"`
	}
	if err := c.do(ctx, "GET", "/v1/threads/"+url.PathEscape(in.ThreadID)+"/messages", nil, nil, &r); err != nil {
		return ReadThreadOut{}, err
	}
	out := ReadThreadOut{ThreadID: r.ThreadID, Subject: r.Subject, IsRead: r.IsRead, Total: r.Total, Messages: make([]Message, 0, len(r.Data))}
	for _, m := range r.Data {
		out.Messages = append(out.Messages, viewMessage(m))
	}
	return out, nil
}

type ReadMessageIn struct {
	MessageID string `json:"message_id" jsonschema:"the message (msg_…)"`
}

func (t *tools) readMessage(ctx context.Context, c *apiClient, in ReadMessageIn) (Message, error) {
	if err := checkID("message_id", in.MessageID, "msg_"); err != nil {
		return Message{}, err
	}
	var m restMessage
	if err := c.do(ctx, "GET", "/v1/messages/"+url.PathEscape(in.MessageID), nil, nil, &m); err != nil {
		return Message{}, err
	}
	return viewMessage(m), nil
}

type MarkThreadReadIn struct {
	ThreadID string `json:"thread_id" jsonschema:"the thread (thr_…)"`
	Read     *bool  `json:"read,omitempty" jsonschema:"true (default) marks it read, false unread"`
}

type MarkThreadReadOut struct {
	ThreadID string `json:"thread_id"`
	IsRead   bool   `json:"is_read"`
}

func (t *tools) markThreadRead(ctx context.Context, c *apiClient, in MarkThreadReadIn) (MarkThreadReadOut, error) {
	if err := checkID("thread_id", in.ThreadID, "thr_"); err != nil {
		return MarkThreadReadOut{}, err
	}
	read := in.Read == nil || *in.Read
	if err := c.do(ctx, "PATCH", "/v1/threads/"+url.PathEscape(in.ThreadID), nil, map[string]bool{"is_read": read}, nil); err != nil {
		return MarkThreadReadOut{}, err
	}
	return MarkThreadReadOut{ThreadID: in.ThreadID, IsRead: read}, nil
}

type GetAttachmentIn struct {
	MessageID string `json:"message_id" jsonschema:"the message (msg_…)"`
	Filename  string `json:"filename" jsonschema:"the attachment's filename, as read_message lists it"`
}

type GetAttachmentOut struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	SizeBytes   int    `json:"size_bytes"`
	URL         string `json:"url" jsonschema:"where to download it (GET with the account's API key)"`
	Text        string `json:"text,omitempty" jsonschema:"the content of a text attachment, or the text extracted from a PDF"`
	Truncated   bool   `json:"truncated,omitempty" jsonschema:"text is only the start of it"`
	Note        string `json:"note,omitempty" jsonschema:"why there is no text, when there is none"`
}

func (t *tools) getAttachment(ctx context.Context, c *apiClient, in GetAttachmentIn) (GetAttachmentOut, error) {
	if err := checkID("message_id", in.MessageID, "msg_"); err != nil {
		return GetAttachmentOut{}, err
	}
	var m restMessage
	if err := c.do(ctx, "GET", "/v1/messages/"+url.PathEscape(in.MessageID), nil, nil, &m); err != nil {
		return GetAttachmentOut{}, err
	}
	var a *restAttachment
	names := make([]string, 0, len(m.Attachments))
	for i := range m.Attachments {
		names = append(names, m.Attachments[i].Filename)
		if m.Attachments[i].Filename == in.Filename {
			a = &m.Attachments[i]
		}
	}
	if a == nil {
		if len(names) == 0 {
			return GetAttachmentOut{}, fmt.Errorf("message %s has no attachments", in.MessageID)
		}
		return GetAttachmentOut{}, fmt.Errorf("message %s has no attachment %q; it has: %s", in.MessageID, in.Filename, strings.Join(quoteAll(names), ", "))
	}
	out := GetAttachmentOut{Filename: a.Filename, ContentType: a.ContentType, SizeBytes: a.SizeBytes, URL: t.publicBase + a.URL}
	kind := classify(a.ContentType, a.Filename)
	switch {
	case kind == kindText:
		data, _, cut, err := c.raw(ctx, a.URL, maxAttachmentText)
		if err != nil {
			return GetAttachmentOut{}, err
		}
		out.Text, _ = cutText(string(data), maxAttachmentText)
		out.Truncated = cut
	case kind == kindPDF && t.opts.PDF == nil:
		out.Note = "PDF text extraction is not enabled on this server"
	case kind == kindPDF:
		limit := t.opts.PDF.MaxInput()
		if a.SizeBytes > limit {
			out.Note = fmt.Sprintf("the PDF is larger than the %d bytes text extraction reads", limit)
			break
		}
		data, _, _, err := c.raw(ctx, a.URL, limit)
		if err != nil {
			return GetAttachmentOut{}, err
		}
		r, err := t.opts.PDF.Extract(ctx, data)
		switch {
		case errors.Is(err, context.Canceled):
			return GetAttachmentOut{}, err
		case err != nil:
			// A bad PDF is an answer, not a failed call.
			out.Note = "the PDF's text could not be extracted: " + err.Error()
		case strings.TrimSpace(r.Text) == "":
			out.Note = "the PDF has no extractable text (a scan, or text drawn as images)"
		default:
			out.Text, out.Truncated = r.Text, r.Truncated
		}
	default:
		out.Note = "not a text type: download it from url"
	}
	return out, nil
}

type attachmentKind int

const (
	kindOther attachmentKind = iota
	kindText
	kindPDF
)

// classify tells text and PDF attachments by their type, or by their
// extension when the sender used a generic type.
func classify(ctype, filename string) attachmentKind {
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(ctype))
	}
	switch {
	case mt == "application/pdf":
		return kindPDF
	case strings.HasPrefix(mt, "text/"), mt == "application/json", mt == "application/xml",
		strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"), mt == "application/csv":
		return kindText
	case mt == "application/octet-stream" || mt == "":
		switch strings.ToLower(path.Ext(filename)) {
		case ".pdf":
			return kindPDF
		case ".txt", ".csv", ".md", ".json", ".xml", ".log":
			return kindText
		}
	}
	return kindOther
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
