package mcpserver_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/mcpserver"
	"github.com/mailwire/mailwire/internal/pdftext"
	"github.com/mailwire/mailwire/internal/pdftext/pdftest"
	"github.com/mailwire/mailwire/internal/testserver"
)

// The test binary is also the PDF extraction child (the server's
// /v1/mcp and the stdio server re-execute it).
func TestMain(m *testing.M) {
	pdftext.Child()
	testserver.RunWithLeakCheck(m)
}

var allTools = []string{"get_attachment", "list_inboxes", "list_threads", "mark_thread_read", "read_message", "read_thread", "wait_for_email"}

func startServer(t *testing.T) *testserver.Server {
	t.Helper()
	return testserver.Start(t, func(c *app.Config) { c.SMTP.Addr = "127.0.0.1:0" })
}

// bearer adds the key to every request (what an MCP host does with a
// configured header).
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.next.RoundTrip(r)
}

type transport struct {
	name    string
	connect func(t *testing.T, s *testserver.Server, key string) *mcp.ClientSession
}

var transports = []transport{{"http", connectHTTP}, {"stdio", connectStdio}}

func newClient() *mcp.Client {
	return mcp.NewClient(&mcp.Implementation{Name: "mailwire-test", Version: "1"}, nil)
}

// connectHTTP connects to the server's /v1/mcp (streamable HTTP).
func connectHTTP(t *testing.T, s *testserver.Server, key string) *mcp.ClientSession {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	cs, err := newClient().Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: s.URL + "/v1/mcp", HTTPClient: &http.Client{Transport: bearer{key, tr}},
	}, nil)
	if err != nil {
		t.Fatalf("connect over HTTP: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// connectStdio runs the server `mailwire mcp` runs (NewStdio, Run) on a
// pair of pipes standing for its stdin and stdout: newline-delimited
// JSON-RPC, as over a real stdio. (cmd/mailwire tests the binary.)
func connectStdio(t *testing.T, s *testserver.Server, key string) *mcp.ClientSession {
	t.Helper()
	srv, err := mcpserver.NewStdio(s.URL, key, mcpserver.Options{PDF: extractor(t)})
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()   // the server's stdin
	outR, outW := io.Pipe() // its stdout
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- mcpserver.Run(ctx, srv, inR, outW)
		_ = outW.Close()
	}()
	cs, err := newClient().Connect(context.Background(), &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.Close()
		_ = inW.Close()
		cancel()
		if err := <-done; err != nil && !strings.Contains(err.Error(), "closed") && !strings.Contains(err.Error(), "EOF") {
			t.Errorf("stdio server: %v", err)
		}
	})
	return cs
}

func extractor(t *testing.T) *pdftext.Extractor {
	e, err := pdftext.New("", pdftext.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// call calls a tool and decodes its structured result into out (when it
// is not an error); it returns the result.
func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s(%v): protocol error %v", name, args, err)
	}
	if !res.IsError && out != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: cannot decode %s: %v", name, b, err)
		}
	}
	return res
}

// mustCall is call that fails the test on a tool error.
func mustCall(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, out any) {
	t.Helper()
	if res := call(t, cs, name, args, out); res.IsError {
		t.Fatalf("%s(%v): tool error %s", name, args, text(res))
	}
}

// toolErr calls a tool that must fail and returns its error text.
func toolErr(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) string {
	t.Helper()
	res := call(t, cs, name, args, nil)
	if !res.IsError {
		t.Fatalf("%s(%v) succeeded: %s; want a tool error", name, args, text(res))
	}
	return text(res)
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// metric reads one sample of /metrics (0 when absent).
func metric(s *testserver.Server, name string) float64 {
	_, body, _ := s.Do("GET", "/metrics", "", nil)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// mail is one message sent over SMTP.
type mail struct {
	from, to, subject, body, messageID, inReplyTo string
	attach                                        []attachment
}

type attachment struct {
	name, ctype string
	data        []byte
}

func sendMail(t *testing.T, s *testserver.Server, m mail) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nMIME-Version: 1.0\r\n", m.from, m.to, m.subject)
	if m.messageID != "" {
		fmt.Fprintf(&b, "Message-ID: %s\r\n", m.messageID)
	}
	if m.inReplyTo != "" {
		fmt.Fprintf(&b, "In-Reply-To: %s\r\nReferences: %s\r\n", m.inReplyTo, m.inReplyTo)
	}
	if len(m.attach) == 0 {
		fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", m.body)
	} else {
		const bd = "mailwire-test-boundary"
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", bd, bd, m.body)
		for _, a := range m.attach {
			fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; name=%q\r\nContent-Disposition: attachment; filename=%q\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n",
				bd, a.ctype, a.name, a.name, base64.StdEncoding.EncodeToString(a.data))
		}
		fmt.Fprintf(&b, "--%s--\r\n", bd)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(m.from[strings.LastIndex(m.from, "<")+1:], "<"), ">")
	if err := smtp.SendMail(s.SMTPAddr(), nil, addr, []string{m.to}, []byte(b.String())); err != nil {
		t.Fatalf("SMTP: %v", err)
	}
}

type waitOut struct {
	Arrived bool   `json:"arrived"`
	EventID string `json:"event_id"`
	Cursor  string `json:"cursor"`
	Message *struct {
		ID          string `json:"id"`
		InboxID     string `json:"inbox_id"`
		ThreadID    string `json:"thread_id"`
		From        string `json:"from"`
		Subject     string `json:"subject"`
		Text        string `json:"text"`
		Attachments []struct {
			Filename    string `json:"filename"`
			ContentType string `json:"content_type"`
		} `json:"attachments"`
	} `json:"message"`
}

// waitAsync runs wait_for_email in the background.
func waitAsync(t *testing.T, cs *mcp.ClientSession, args map[string]any) (<-chan waitOut, <-chan string) {
	outc, errc := make(chan waitOut, 1), make(chan string, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "wait_for_email", Arguments: args})
		switch {
		case err != nil:
			errc <- err.Error()
		case res.IsError:
			errc <- text(res)
		default:
			var w waitOut
			b, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(b, &w); err != nil {
				errc <- err.Error()
				return
			}
			outc <- w
		}
	}()
	return outc, errc
}

func recv(t *testing.T, outc <-chan waitOut, errc <-chan string) waitOut {
	t.Helper()
	select {
	case w := <-outc:
		return w
	case e := <-errc:
		t.Fatalf("wait_for_email: %s", e)
	case <-time.After(60 * time.Second):
		t.Fatal("wait_for_email did not return")
	}
	return waitOut{}
}

// Every tool over both transports against the real server: the list,
// the schemas, wait_for_email woken by mail sent over SMTP after the call
// began, threads, messages, attachments (text, PDF text, other), and
// the errors a model gets.
func TestToolsOverBothTransports(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			testTools(t, tr)
		})
	}
}

func testTools(t *testing.T, tr transport) {
	s := startServer(t)
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	other := s.NewInbox(a.Key, "other")
	cs := tr.connect(t, s, a.Key)

	// The tools and their schemas.
	lt, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range lt.Tools {
		names = append(names, tool.Name)
		schema, _ := json.Marshal(tool.InputSchema)
		if !strings.Contains(string(schema), `"type":"object"`) || tool.Description == "" || tool.OutputSchema == nil {
			t.Errorf("tool %s: schema %s, description %q, output schema %v", tool.Name, schema, tool.Description, tool.OutputSchema)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, allTools) {
		t.Fatalf("tools %v, want %v", names, allTools)
	}

	var inboxes struct {
		Inboxes []struct{ ID, Address string } `json:"inboxes"`
		Total   int                            `json:"total"`
	}
	mustCall(t, cs, "list_inboxes", nil, &inboxes)
	if inboxes.Total != 2 || len(inboxes.Inboxes) != 2 || !slices.ContainsFunc(inboxes.Inboxes, func(i struct{ ID, Address string }) bool {
		return i.ID == in && i.Address == "agent@mail.test"
	}) {
		t.Fatalf("list_inboxes: %+v", inboxes)
	}

	// wait_for_email, first call (no cursor): held on the server until
	// mail arrives over SMTP, sent only once the call is waiting.
	held := metric(s, "mailwire_pull_held")
	outc, errc := waitAsync(t, cs, map[string]any{"inbox_id": in, "timeout_seconds": 45})
	testserver.WaitFor(t, 10*time.Second, "wait_for_email's pull is held on the server", func() bool { return metric(s, "mailwire_pull_held") > held })
	sendMail(t, s, mail{from: "Other <x@example.com>", to: "other@mail.test", subject: "to the other inbox", body: "no"})
	testserver.Never(t, 200*time.Millisecond, "mail to another inbox ends the filtered wait", func() bool { return len(outc)+len(errc) > 0 })
	sent := time.Now()
	sendMail(t, s, mail{from: "Customer <customer@example.com>", to: "agent@mail.test", subject: "Order 4711", body: "Where is my parcel?",
		messageID: "<order-4711@example.com>", attach: []attachment{
			{"notes.txt", "text/plain", []byte("line one\nline two")},
			{"invoice.pdf", "application/pdf", pdftest.Make("Invoice 4711 from mailwire\nTotal due: 123.45 EUR")},
			{"photo.png", "image/png", []byte("\x89PNG\r\n\x1a\nnot really")},
		}})
	w := recv(t, outc, errc)
	t.Logf("%s: wait_for_email returned %s after the SMTP message was accepted", tr.name, time.Since(sent).Round(time.Millisecond))
	if !w.Arrived || w.Message == nil || w.Message.Subject != "Order 4711" || w.Message.InboxID != in ||
		!strings.Contains(w.Message.Text, "parcel") || len(w.Message.Attachments) != 3 || w.Cursor == "" || w.EventID != w.Cursor {
		t.Fatalf("wait_for_email: %+v %+v", w, w.Message)
	}
	first := w.Message

	// With the cursor and filters: mail already there after the cursor
	// is returned at once; the filters skip what does not match.
	sendMail(t, s, mail{from: "Spam <spam@example.net>", to: "agent@mail.test", subject: "Order 4711 cheap", body: "buy"})
	sendMail(t, s, mail{from: "Customer <customer@example.com>", to: "agent@mail.test", subject: "Re: Order 4711", body: "Any news?",
		inReplyTo: "<order-4711@example.com>"})
	var w2 waitOut
	mustCall(t, cs, "wait_for_email", map[string]any{"cursor": w.Cursor, "sender": "CUSTOMER@example.com", "subject": "order 4711", "timeout_seconds": 20}, &w2)
	if !w2.Arrived || w2.Message.Subject != "Re: Order 4711" || w2.Message.ThreadID != first.ThreadID {
		t.Fatalf("wait_for_email with a cursor and filters: %+v %+v", w2, w2.Message)
	}
	// Nothing more after it: the timeout passes, the cursor stays usable.
	start := time.Now()
	var w3 waitOut
	mustCall(t, cs, "wait_for_email", map[string]any{"cursor": w2.Cursor, "sender": "customer@", "timeout_seconds": 1}, &w3)
	if w3.Arrived || w3.Cursor == "" || time.Since(start) < time.Second {
		t.Fatalf("wait_for_email timeout: %+v after %s", w3, time.Since(start))
	}

	// read_message.
	var m struct {
		ID, From, Subject, Text string
		Attachments             []struct {
			Filename string `json:"filename"`
		} `json:"attachments"`
	}
	mustCall(t, cs, "read_message", map[string]any{"message_id": first.ID}, &m)
	if m.ID != first.ID || !strings.Contains(m.From, "customer@example.com") || !strings.Contains(m.Text, "parcel") || len(m.Attachments) != 3 {
		t.Fatalf("read_message: %+v", m)
	}

	// get_attachment: text, PDF (extracted), other (metadata and URL).
	var att struct {
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
		SizeBytes   int    `json:"size_bytes"`
		URL         string `json:"url"`
		Text        string `json:"text"`
		Note        string `json:"note"`
	}
	mustCall(t, cs, "get_attachment", map[string]any{"message_id": first.ID, "filename": "notes.txt"}, &att)
	if att.Text != "line one\nline two" || att.ContentType != "text/plain" {
		t.Fatalf("text attachment: %+v", att)
	}
	att.Text = ""
	mustCall(t, cs, "get_attachment", map[string]any{"message_id": first.ID, "filename": "invoice.pdf"}, &att)
	if !strings.Contains(att.Text, "Invoice 4711 from mailwire") || !strings.Contains(att.Text, "Total due: 123.45 EUR") {
		t.Fatalf("PDF attachment: %+v", att)
	}
	att.Text = ""
	mustCall(t, cs, "get_attachment", map[string]any{"message_id": first.ID, "filename": "photo.png"}, &att)
	if att.Text != "" || att.Note == "" || !strings.HasSuffix(att.URL, "/v1/attachments/"+first.ID+"/photo.png") || att.SizeBytes == 0 {
		t.Fatalf("binary attachment: %+v", att)
	}
	if e := toolErr(t, cs, "get_attachment", map[string]any{"message_id": first.ID, "filename": "nope.txt"}); !strings.Contains(e, `"invoice.pdf"`) {
		t.Errorf("missing attachment: %s", e)
	}

	// Threads.
	type thread struct {
		ID           string `json:"id"`
		Subject      string `json:"subject"`
		IsRead       bool   `json:"is_read"`
		MessageCount int    `json:"message_count"`
	}
	var threads struct {
		Threads []thread `json:"threads"`
		Total   int      `json:"total"`
	}
	mustCall(t, cs, "list_threads", map[string]any{"inbox_id": in}, &threads)
	i := slices.IndexFunc(threads.Threads, func(th thread) bool { return th.ID == first.ThreadID })
	if threads.Total != 2 || i < 0 || threads.Threads[i].MessageCount != 2 || threads.Threads[i].IsRead {
		t.Fatalf("list_threads: %+v", threads)
	}
	var rt struct {
		ThreadID string `json:"thread_id"`
		Messages []struct {
			Subject   string `json:"subject"`
			Direction string `json:"direction"`
		} `json:"messages"`
	}
	mustCall(t, cs, "read_thread", map[string]any{"thread_id": first.ThreadID}, &rt)
	if rt.ThreadID != first.ThreadID || len(rt.Messages) != 2 || rt.Messages[0].Subject != "Order 4711" ||
		rt.Messages[1].Subject != "Re: Order 4711" || rt.Messages[0].Direction != "inbound" {
		t.Fatalf("read_thread: %+v", rt)
	}
	var mr struct {
		IsRead bool `json:"is_read"`
	}
	mustCall(t, cs, "mark_thread_read", map[string]any{"thread_id": first.ThreadID}, &mr)
	if !mr.IsRead {
		t.Fatalf("mark_thread_read: %+v", mr)
	}
	mustCall(t, cs, "list_threads", map[string]any{"inbox_id": in, "unread_only": true}, &threads)
	if threads.Total != 1 || threads.Threads[0].ID == first.ThreadID {
		t.Fatalf("unread threads after mark_thread_read: %+v", threads)
	}
	mustCall(t, cs, "mark_thread_read", map[string]any{"thread_id": first.ThreadID, "read": false}, &mr)
	mustCall(t, cs, "list_threads", map[string]any{"inbox_id": in, "unread_only": true}, &threads)
	if threads.Total != 2 {
		t.Fatalf("unread threads after read=false: %+v", threads)
	}

	// Errors a model can act on: tool errors with a hint, never protocol
	// errors.
	for _, c := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"read_message", map[string]any{"message_id": "msg_01JD7Z8Q7W3M1X5K2B9N4C6V8P"}, "not_found"},
		{"read_message", map[string]any{"message_id": "nope"}, "msg_"},
		{"read_message", map[string]any{}, "message_id"},
		{"read_message", map[string]any{"message_id": first.ID, "bogus": 1}, "bogus"},
		{"read_thread", map[string]any{"thread_id": "thr_01JD7Z8Q7W3M1X5K2B9N4C6V8P"}, "not_"},
		{"list_threads", map[string]any{"inbox_id": "inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P"}, "not_"},
		{"wait_for_email", map[string]any{"inbox_id": "inb_01JD7Z8Q7W3M1X5K2B9N4C6V8P", "timeout_seconds": 1}, "not_found"},
		{"wait_for_email", map[string]any{"timeout_seconds": 100000}, "timeout_seconds"},
		{"wait_for_email", map[string]any{"cursor": "yesterday"}, "cursor"},
		{"list_inboxes", map[string]any{"limit": 1000}, "limit"},
	} {
		if e := toolErr(t, cs, c.tool, c.args); !strings.Contains(e, c.want) {
			t.Errorf("%s(%v): %q lacks %q", c.tool, c.args, e, c.want)
		}
	}
	_ = other
}

// No tool returns another account's data, over either transport: ids of
// account a are not found with b's key, a's mail does not end b's wait,
// and b cannot mark a's thread.
func TestToolsCrossAccountIsolation(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a, b := s.NewAccount("a"), s.NewAccount("b")
	inA := s.NewInbox(a.Key, "alice")
	inB := s.NewInbox(b.Key, "bob")
	sendMail(t, s, mail{from: "C <c@example.com>", to: "alice@mail.test", subject: "for a", body: "secret of a", messageID: "<a1@example.com>",
		attach: []attachment{{"a.txt", "text/plain", []byte("a's file")}}})
	var msgA, thrA string
	testserver.WaitFor(t, 10*time.Second, "a's message stored", func() bool {
		var l struct {
			Data []struct{ ID, ThreadID string } `json:"data"`
		}
		s.MustJSON("GET", "/v1/inboxes/"+inA+"/messages", a.Key, nil, http.StatusOK, &l)
		if len(l.Data) == 1 {
			msgA, thrA = l.Data[0].ID, l.Data[0].ThreadID
		}
		return msgA != ""
	})
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			cs := tr.connect(t, s, b.Key)
			var inboxes struct {
				Inboxes []struct{ ID string } `json:"inboxes"`
			}
			mustCall(t, cs, "list_inboxes", nil, &inboxes)
			if len(inboxes.Inboxes) != 1 || inboxes.Inboxes[0].ID != inB {
				t.Fatalf("b's list_inboxes: %+v", inboxes)
			}
			for _, c := range []struct {
				tool string
				args map[string]any
			}{
				{"read_message", map[string]any{"message_id": msgA}},
				{"get_attachment", map[string]any{"message_id": msgA, "filename": "a.txt"}},
				{"read_thread", map[string]any{"thread_id": thrA}},
				{"mark_thread_read", map[string]any{"thread_id": thrA}},
				{"list_threads", map[string]any{"inbox_id": inA}},
				{"wait_for_email", map[string]any{"inbox_id": inA, "timeout_seconds": 1}},
			} {
				e := toolErr(t, cs, c.tool, c.args)
				if strings.Contains(e, "secret of a") || strings.Contains(e, "a's file") ||
					!strings.Contains(e, "not_found") {
					t.Errorf("b's %s on a's data: %s", c.tool, e)
				}
			}
			// a's new mail does not end b's wait.
			outc, errc := waitAsync(t, cs, map[string]any{"timeout_seconds": 2})
			sendMail(t, s, mail{from: "C <c@example.com>", to: "alice@mail.test", subject: "for a again", body: "x"})
			if w := recv(t, outc, errc); w.Arrived {
				t.Fatalf("b's wait_for_email returned a's mail: %+v", w.Message)
			}
		})
	}
	var l struct {
		Data []struct {
			ID     string `json:"id"`
			IsRead bool   `json:"isRead"`
		} `json:"data"`
	}
	s.MustJSON("GET", "/v1/inboxes/"+inA+"/threads", a.Key, nil, http.StatusOK, &l)
	for _, th := range l.Data {
		if th.IsRead {
			t.Errorf("b marked a's thread %s read", th.ID)
		}
	}
}

// /v1/mcp's HTTP edge: the Bearer key is required (401 in the API's own
// envelope), GET is 405 (stateless: no stream to open), and many
// concurrent calls of several sessions are answered.
func TestMCPHTTPEdge(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := s.NewAccount("a")
	s.NewInbox(a.Key, "edge")
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
	st, body, _ := s.Do("POST", "/v1/mcp", "", init, "Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	if st != http.StatusUnauthorized || !strings.Contains(string(body), `"error":"unauthorized"`) {
		t.Fatalf("no key: %d %s", st, body)
	}
	st, body, hdr := s.Do("GET", "/v1/mcp", a.Key, nil)
	if st != http.StatusMethodNotAllowed || hdr.Get("Allow") != "POST" {
		t.Fatalf("GET: %d %s %v", st, body, hdr)
	}
	// A bare tools/call POST (a stateless server needs no initialize).
	st, body, _ = s.Do("POST", "/v1/mcp", a.Key, []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_inboxes","arguments":{}}}`),
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	if st != http.StatusOK || !strings.Contains(string(body), "edge@mail.test") {
		t.Fatalf("bare tools/call: %d %s", st, body)
	}

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := connectHTTP(t, s, a.Key)
			for range 5 {
				res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "list_inboxes", Arguments: map[string]any{}})
				if err != nil || res.IsError {
					t.Errorf("session %d: %v %v", i, err, res)
					return
				}
			}
		}()
	}
	wg.Wait()
}
