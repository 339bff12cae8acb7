package console_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// oneAttempt makes an event with no WebSocket and no webhook fail at its
// first attempt, so tests have failed events without waiting.
func oneAttempt(c *app.Config) { c.Delivery.Schedule = []time.Duration{0} }

// failedEvent stores a message nobody listens to and waits for its event
// to fail.
func failedEvent(t *testing.T, s *testserver.Server, key, inbox, subject string) string {
	t.Helper()
	evt := s.Inbound(key, inbox, subject)
	testserver.WaitFor(t, 5*time.Second, "event "+evt+" fails", func() bool { return s.EventStatus(key, evt) == "failed" })
	return evt
}

// signIn opens the console and signs in with an API key.
func signIn(b *browser, s *testserver.Server, key string) {
	b.t.Helper()
	b.do("open the console", 30*time.Second, chromedp.Navigate(s.URL+"/console"))
	b.do("sign in", 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#input-key")),
		chromedp.SendKeys(chromedp.CSS("#input-key"), key),
		chromedp.Click(chromedp.CSS("#form-key button")),
		chromedp.WaitVisible(chromedp.CSS("#view-account")),
	)
}

// startTail starts the live tail and waits for its subscription.
func startTail(b *browser) {
	b.t.Helper()
	b.click("#tail-toggle")
	b.visible(`#tail-status[data-state="live"]`, 10*time.Second)
}

// TestConsole drives the console as a person would: sign in, watch a
// message arrive in the live tail, open it and its attempts, send one
// from the form, redeliver a failed event, then watch the operator view's
// numbers move, and run the page's Python snippet.
func TestConsole(t *testing.T) {
	s := testserver.Start(t, oneAttempt)
	acc := s.NewAccount("acme")
	inbox := s.NewInbox(acc.Key, "agent")
	failedEvt := failedEvent(t, s, acc.Key, inbox, "nobody listened")
	other := s.NewAccount("other")
	otherFailed := failedEvent(t, s, other.Key, s.NewInbox(other.Key, "support"), "nobody listened either")

	b := newBrowser(t)
	signIn(b, s, acc.Key)
	row := `#inbox-list li[data-inbox-id="` + inbox + `"]`
	b.visible(row, 10*time.Second)
	if got := b.text(row + " .address"); got != "agent@mail.test" {
		t.Fatalf("inbox address shown as %q", got)
	}
	if got := b.text("#account-webhook"); got != "not set" {
		t.Fatalf("account webhook shown as %q", got)
	}
	if py := b.text("#snippet-python"); !strings.Contains(py, "token="+acc.Key) || !strings.Contains(py, "async for ws in websockets.connect(") {
		t.Fatalf("the Python snippet lacks the key or the reconnect loop:\n%s", py)
	}
	if js := b.text("#snippet-node"); !strings.Contains(js, `require("ws")`) || !strings.Contains(js, acc.Key) {
		t.Fatalf("the Node snippet lacks ws or the key:\n%s", js)
	}

	t.Log("live tail: a message appears within a second")
	startTail(b)
	start := time.Now()
	evt := s.Inbound(acc.Key, inbox, "live one")
	item := `#tail-list li[data-event-id="` + evt + `"]`
	b.visible(item, 2*time.Second)
	if d := time.Since(start); d > time.Second {
		t.Errorf("the message took %s to appear in the live tail", d)
	}
	if got := b.text(item + " .subject"); got != "live one" {
		t.Fatalf("tail shows subject %q", got)
	}

	t.Log("open it: message and attempts")
	b.click(item)
	b.visible("#msg-subject", 5*time.Second)
	if got := b.text("#detail-id"); got != evt {
		t.Fatalf("detail shows %s, want %s", got, evt)
	}
	if got := b.text("#msg-text"); got != "body of live one" {
		t.Fatalf("text body shown as %q", got)
	}
	b.waitJS("the WebSocket attempt is listed", 5*time.Second, `!!document.querySelector('#attempts tr[data-ok="true"]')`)
	if got := b.text(`#attempts tr[data-n="1"]`); !strings.Contains(got, "websocket") {
		t.Fatalf("attempt row: %q", got)
	}
	b.waitJS("the headers are shown", 5*time.Second, `[...document.querySelectorAll('#msg-headers th')].some(th => th.textContent === 'Subject')`)

	t.Log("send a message from the form")
	b.do("fill the form", 5*time.Second, chromedp.SetValue(chromedp.CSS("#send-subject"), "sent from the form"))
	b.click("#form-send button")
	b.visible("#send-event-id", 5*time.Second)
	formEvt := b.text("#send-event-id")
	b.visible(`#tail-list li[data-event-id="`+formEvt+`"]`, 5*time.Second)

	t.Log("redeliver a failed event")
	if !eval[bool](b, `(() => { const s = document.getElementById('events-status'); s.value = 'failed'; s.dispatchEvent(new Event('change')); return true })()`) {
		t.Fatal("cannot filter the events")
	}
	failedItem := `#events-list li[data-event-id="` + failedEvt + `"]`
	b.visible(failedItem, 5*time.Second)
	b.click(failedItem)
	b.visible("#redeliver", 5*time.Second)
	if got := b.text(`#attempts tr[data-n="1"]`); !strings.Contains(got, "none") || !strings.Contains(got, "no WebSocket subscribed") {
		t.Fatalf("failed attempt row: %q", got)
	}
	b.click("#redeliver")
	// The tail is this account's subscriber, so the new cycle's first
	// attempt reaches it.
	b.waitJS("the redelivered event is delivered", 10*time.Second, `document.querySelector('#detail-status')?.dataset.status === 'delivered'`)
	b.visible(`#attempts tr[data-n="2"][data-ok="true"]`, 5*time.Second)
	if st := s.EventStatus(acc.Key, failedEvt); st != "delivered" {
		t.Fatalf("after redeliver the API says %s", st)
	}
	b.visible(`#tail-list li[data-event-id="`+failedEvt+`"]`, 5*time.Second)

	t.Log("operator view")
	b.click("#nav-operator")
	b.do("sign in as operator", 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#input-admin")),
		chromedp.SendKeys(chromedp.CSS("#input-admin"), testserver.AdminToken),
		chromedp.Click(chromedp.CSS("#form-admin button")),
		chromedp.WaitVisible(chromedp.CSS("#view-operator")),
		chromedp.WaitNotVisible(chromedp.CSS("#view-account")),
	)
	// The account view's tail still runs: one connection, subscribed.
	b.waitJS("the tail's connection is counted", 5*time.Second, `document.getElementById('op-connections').textContent === '1'`)
	accRow := `#op-accounts-table tr[data-account-id="` + acc.ID + `"]`
	b.waitJS("per-account counts", 5*time.Second,
		`document.querySelector('`+accRow+` .conns')?.textContent === '1' && document.querySelector('`+accRow+` .subs')?.textContent === '1'`)
	if got := b.text(`#op-accounts-table tr[data-account-id="` + other.ID + `"] .conns`); got != "0" {
		t.Fatalf("the other account shows %s connections", got)
	}
	b.visible(`#op-failed tr[data-event-id="`+otherFailed+`"]`, 10*time.Second)
	if n := eval[int](b, `document.querySelectorAll('#op-failed tr[data-event-id=`+jsString(failedEvt)+`]').length`); n != 0 {
		t.Fatal("the redelivered event is still listed as failed")
	}
	stored := leadingInt(t, b.text("#op-stored"))
	s.Inbound(acc.Key, inbox, "counted")
	b.waitJS("events stored moves", 6*time.Second,
		`parseInt(document.getElementById('op-stored').textContent.replace(/,/g, ''), 10) > `+strconv.Itoa(stored))
	b.waitJS("rates appear", 6*time.Second, `document.getElementById('op-rate-stored').textContent !== '—'`)

	t.Log("the page's snippets receive events")
	runSnippet(t, s, acc.Key, b.text("#snippet-python"), "listen.py", nil, testserver.Python(t))
	node := testserver.Tool(t, "/usr/bin/node", "nodejs")
	testserver.Tool(t, "/usr/share/nodejs/ws", "node-ws") // the snippet's `npm install ws`, from Debian
	runSnippet(t, s, acc.Key, b.text("#snippet-node"), "listen.js", []string{"NODE_PATH=/usr/share/nodejs"}, node)

	t.Log("sign out of both views: nothing of the account stays")
	b.click("#signout")
	b.visible("#input-admin", 5*time.Second)
	b.click("#nav-account")
	b.click("#signout")
	b.visible("#input-key", 5*time.Second)
	if left := eval[string](b, `document.getElementById('view-account').textContent + JSON.stringify(sessionStorage)`); strings.Contains(left, acc.Key) {
		t.Fatal("the key is still in the page or the session storage after signing out")
	}
	testserver.WaitFor(t, 5*time.Second, "the tail's connection closes", func() bool {
		var st statsAnswer
		s.MustJSON("GET", "/admin/v1/stats", testserver.AdminToken, nil, http.StatusOK, &st)
		return st.Connections.Registered == 0
	})

	if ex := b.exceptions(); len(ex) > 0 {
		t.Fatalf("uncaught exceptions in the page: %q", ex)
	}
}

func leadingInt(t *testing.T, s string) int {
	t.Helper()
	f := strings.Fields(strings.ReplaceAll(s, ",", ""))
	if len(f) == 0 {
		t.Fatalf("no number in %q", s)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("no number in %q", s)
	}
	return n
}

// runSnippet runs a client snippet as a user would paste it (saved as
// file, run with argv and env), waits for it to subscribe, stores a
// message and waits for the snippet to print its event; then it stops the
// snippet and waits for its connection to go.
func runSnippet(t *testing.T, s *testserver.Server, key, snippet, file string, env []string, argv ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, []byte(snippet), 0o600); err != nil {
		t.Fatal(err)
	}
	subscribed := func() int {
		var st statsAnswer
		s.MustJSON("GET", "/admin/v1/stats", testserver.AdminToken, nil, http.StatusOK, &st)
		return st.Connections.Subscribed
	}
	baseline := subscribed()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], path)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-read
		_ = cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("%s printed %q, stderr:\n%s", file, lines, stderr.String())
			mu.Unlock()
		}
	}
	defer stop()
	testserver.WaitFor(t, 10*time.Second, file+" subscribes", func() bool { return subscribed() == baseline+1 })
	evt := s.Inbound(key, s.NewInbox(key, strings.ReplaceAll(file, ".", "-")), "for "+file)
	testserver.WaitFor(t, 10*time.Second, file+" prints the event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if strings.HasPrefix(l, "message.received "+evt+" sender@example.com for "+file) {
				return true
			}
		}
		return false
	})
	stop()
	testserver.WaitFor(t, 10*time.Second, file+"'s connection closes", func() bool { return subscribed() == baseline })
}

// TestConsoleShowsHostileMailAsText sends mail made to attack the console
// — markup with handlers in the subject, sender and filename, script in
// the text and HTML bodies — and checks that none of it runs: not in the
// page (no element made from it, no flag set, the title unchanged) and
// not in the HTML frame (sandboxed without allow-scripts; Chromium
// reports the blocked script).
func TestConsoleShowsHostileMailAsText(t *testing.T) {
	s := testserver.Start(t)
	acc := s.NewAccount("target")
	inbox := s.NewInbox(acc.Key, "victim")
	b := newBrowser(t)
	signIn(b, s, acc.Key)
	startTail(b)

	pwn := func(n int) string {
		return `document.title='pwned';window.__pwned=` + strconv.Itoa(n) + `;parent.__pwned=` + strconv.Itoa(n)
	}
	subject := `<img src=x onerror="` + pwn(1) + `">`
	from := `"<svg onload=` + pwn(2) + `>" <evil@example.com>`
	text := `<script>` + pwn(3) + `</script>`
	html := `<script>` + pwn(4) + `</script><img src=x onerror="` + pwn(5) + `"><p>hello from the frame</p>`
	filename := `<img src=x onerror=` + pwn(6) + `>.txt`
	var out struct{ EventID string }
	s.MustJSON("POST", "/v1/inboxes/"+inbox+"/inbound", acc.Key, map[string]any{
		"from": from, "subject": subject, "text": text, "html": html,
		"attachments": []map[string]string{{"filename": filename, "contentBase64": "aGk="}},
	}, http.StatusAccepted, &out)

	item := `#tail-list li[data-event-id="` + out.EventID + `"]`
	b.visible(item, 5*time.Second)
	if got := b.text(item + " .subject"); got != subject {
		t.Fatalf("the tail shows the subject as %q", got)
	}
	b.click(item)
	b.visible("#msg-html", 5*time.Second)
	if got := b.text("#msg-subject"); got != subject {
		t.Fatalf("the message view shows the subject as %q", got)
	}
	if got := b.text("#msg-text"); got != text {
		t.Fatalf("the text body is shown as %q", got)
	}
	if got := b.text("#msg-from"); !strings.Contains(got, "<svg onload=") {
		t.Fatalf("the sender is shown as %q", got)
	}
	if got := b.text("#msg-attachments .filename"); !strings.Contains(got, "onerror=") {
		t.Fatalf("the filename is shown as %q", got)
	}
	if sb := eval[string](b, `document.getElementById('msg-html').getAttribute('sandbox')`); sb != "" {
		t.Fatalf("the HTML frame's sandbox is %q, want empty (nothing allowed)", sb)
	}
	if !eval[bool](b, `document.getElementById('msg-html').srcdoc.includes('<script>')`) {
		t.Fatal("the HTML frame did not get the message's HTML")
	}
	// Inside the frame: the HTML rendered, its scripts did not run.
	if got := frameEval(t, b, `String(window.__pwned) + '|' + document.title + '|' + document.body.textContent`); got != "undefined||hello from the frame" {
		t.Fatalf("in the HTML frame: %q (want no flag, the title untouched, the text shown)", got)
	}
	// The headers table (from the raw message) is in too, as text.
	b.waitJS("the headers are shown", 5*time.Second, `[...document.querySelectorAll('#msg-headers th')].some(th => th.textContent === 'Subject')`)

	if n := eval[int](b, `document.querySelectorAll('#tail-list img, #tail-list svg, #tail-list script, #detail img, #detail svg, #detail script').length`); n != 0 {
		t.Fatalf("%d elements were made from mail", n)
	}
	if title := eval[string](b, `document.title`); title != "mailwire console" {
		t.Fatalf("document.title is %q", title)
	}
	if v := eval[string](b, `String(window.__pwned)`); v != "undefined" {
		t.Fatalf("window.__pwned = %s: mail ran script in the console", v)
	}
	if ex := b.exceptions(); len(ex) > 0 {
		t.Fatalf("uncaught exceptions in the page: %q", ex)
	}
}

// frameEval evaluates expr in the message's HTML frame. Chromium runs a
// sandboxed frame in its own process (a target of type "iframe"), which
// the page's context does not reach, so this attaches to it.
func frameEval(t *testing.T, b *browser, expr string) string {
	t.Helper()
	var id target.ID
	testserver.WaitFor(t, 5*time.Second, "the HTML frame's target", func() bool {
		infos, err := chromedp.Targets(b.ctx)
		if err != nil {
			t.Fatalf("targets: %v", err)
		}
		for _, info := range infos {
			if info.Type == "iframe" && info.URL == "about:srcdoc" {
				id = info.TargetID
				return true
			}
		}
		return false
	})
	fctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(id), chromedp.WithDetachOnCancel())
	defer cancel()
	ctx, stop := context.WithTimeout(fctx, 10*time.Second)
	defer stop()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate in the frame: %v", err)
	}
	return v
}

// TestConsoleTailResumes cuts the network under a running live tail: the
// page reconnects with backoff and resumes with last_event_id, so the
// events stored while it was away arrive by replay.
func TestConsoleTailResumes(t *testing.T) {
	s := testserver.Start(t, oneAttempt)
	acc := s.NewAccount("acme")
	inbox := s.NewInbox(acc.Key, "agent")
	proxy := newProxy(t, strings.TrimPrefix(s.URL, "http://"))
	b := newBrowser(t)
	b.do("open the console", 30*time.Second, chromedp.Navigate(proxy.URL()+"/console"))
	b.do("sign in", 10*time.Second,
		chromedp.WaitVisible(chromedp.CSS("#input-key")),
		chromedp.SendKeys(chromedp.CSS("#input-key"), acc.Key),
		chromedp.Click(chromedp.CSS("#form-key button")),
	)
	startTail(b)
	first := s.Inbound(acc.Key, inbox, "before the drop")
	b.visible(`#tail-list li[data-event-id="`+first+`"]`, 5*time.Second)

	// Cut the network and store two events while the page is away:
	// nobody is subscribed, so they fail (and stay stored).
	proxy.cut()
	b.waitJS("the tail notices", 5*time.Second, `document.getElementById('tail-status').dataset.state !== 'live'`)
	testserver.WaitFor(t, 5*time.Second, "the server sees the connection go", func() bool {
		var st statsAnswer
		s.MustJSON("GET", "/admin/v1/stats", testserver.AdminToken, nil, http.StatusOK, &st)
		return st.Connections.Registered == 0
	})
	missed := []string{failedEvent(t, s, acc.Key, inbox, "missed one"), failedEvent(t, s, acc.Key, inbox, "missed two")}
	proxy.restore()

	b.visible(`#tail-status[data-state="live"]`, 10*time.Second)
	for _, evt := range missed {
		b.visible(`#tail-list li[data-event-id="`+evt+`"]`, 5*time.Second)
	}
	if got := b.text("#tail-status"); got != "live (resumed)" {
		t.Fatalf("tail status %q", got)
	}
	// Once each: the first event is not shown again.
	if n := eval[int](b, `document.querySelectorAll('#tail-list li[data-event-id=`+jsString(first)+`]').length`); n != 1 {
		t.Fatalf("the first event is listed %d times", n)
	}
}

// statsAnswer is the part of GET /admin/v1/stats the tests read.
type statsAnswer struct {
	Connections struct{ Registered, Subscribed int }
}
