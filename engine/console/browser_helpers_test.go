package console_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailwire/mailwire/internal/testserver"
)

func TestMain(m *testing.M) { testserver.RunWithLeakCheck(m) }

// browser is one headless Chromium with one tab, for one test: a fresh
// profile, the flags this machine needs, and the tab's console collected
// (printed when the test fails).
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
	done    chan struct{} // the console reader ended
}

// chromium is Debian's browser (scripts/test-deps installs it).
const chromium = "/usr/bin/chromium"

// newBrowser starts Chromium; it is stopped, and its goroutines end,
// when the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := testserver.Tool(t, chromium, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in a container: Chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1100),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, done: make(chan struct{})}
	msgs := chromedp.Console(ctx) // starts the browser and subscribes
	go func() {
		defer close(b.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = chromedp.Cancel(ctx) // closes the browser and waits for it
		cancel()
		acancel()
		<-b.done
		if t.Failed() {
			for _, m := range b.messages() {
				t.Logf("browser console: %s (%s:%d)", m, m.URL, m.Line)
			}
		}
	})
	return b
}

func (b *browser) messages() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]chromedp.ConsoleMessage(nil), b.console...)
}

// exceptions are the page's uncaught exceptions so far.
func (b *browser) exceptions() []string {
	var out []string
	for _, m := range b.messages() {
		if m.IsException() {
			out = append(out, m.Text)
		}
	}
	return out
}

// do runs actions, failing the test with what on error. Each call has a
// deadline (the browser lives on after it).
func (b *browser) do(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v (uncaught exceptions: %q)", what, err, b.exceptions())
	}
}

// text returns the text content of the first element matching css.
func (b *browser) text(css string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(css)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", css, err)
	}
	return strings.TrimSpace(s)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy in the page.
func (b *browser) waitJS(what string, timeout time.Duration, expr string) {
	b.t.Helper()
	b.do(what, timeout+time.Second, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(10*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
}

// visible waits until an element matching css is visible.
func (b *browser) visible(css string, timeout time.Duration) {
	b.t.Helper()
	b.do("wait for "+css, timeout, chromedp.WaitVisible(chromedp.CSS(css)))
}

// click clicks the first element matching css once it is visible.
func (b *browser) click(css string) {
	b.t.Helper()
	b.do("click "+css, 10*time.Second, chromedp.WaitVisible(chromedp.CSS(css)), chromedp.Click(chromedp.CSS(css)))
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}
