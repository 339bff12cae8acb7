package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mailwire/mailwire/internal/testserver"
	"github.com/mailwire/mailwire/store"
)

// TestBinary builds the mailwire command and runs it as a user would.
func TestBinary(t *testing.T) {
	bin := mailwireBinary(t)

	t.Run("ServeDevAndSIGTERM", func(t *testing.T) { testServeDev(t, bin) })
	t.Run("InvalidFlags", func(t *testing.T) {
		out, code := runBin(t, bin, "serve", "--http-addr", "nonsense", "--log-level", "loud", "--max-message-size", "1", "--retry-schedule", "0s")
		if code != 1 {
			t.Fatalf("exit code %d, want 1:\n%s", code, out)
		}
		for _, want := range []string{"invalid configuration", "--http-addr", "--log-level", "--max-message-size"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("UnknownFlag", func(t *testing.T) {
		out, code := runBin(t, bin, "serve", "--no-such-flag")
		// The error and a pointer to --help, not the whole usage.
		if code != 1 || !strings.Contains(out, "no-such-flag") || !strings.Contains(out, "see mailwire serve --help") || strings.Contains(out, "Usage:") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("ServeHelp", func(t *testing.T) {
		out, code := runBin(t, bin, "serve", "--help")
		if code != 0 || !strings.Contains(out, "-retry-schedule delays") || !strings.Contains(out, "-ws-max-pending size") || !strings.Contains(out, "MAILWIRE_") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("PortInUse", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out, code := runBin(t, bin, "serve", "--http-addr", ln.Addr().String(), "--smtp-addr", "", "--data-dir", filepath.Join(t.TempDir(), "d"))
		if code != 1 || !strings.Contains(out, "cannot listen on "+ln.Addr().String()) {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("Version", func(t *testing.T) {
		out, code := runBin(t, bin, "version")
		if code != 0 || !strings.HasPrefix(out, "mailwire ") {
			t.Fatalf("exit %d: %q", code, out)
		}
	})
	t.Run("UnknownCommand", func(t *testing.T) {
		out, code := runBin(t, bin, "frobnicate")
		if code != 2 || !strings.Contains(out, "unknown command") || !strings.Contains(out, "see mailwire --help") || strings.Contains(out, "Usage:") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		if _, code := runBin(t, bin); code != 2 {
			t.Fatalf("no command: exit %d, want 2", code)
		}
	})
	t.Run("LockedDataDir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "d")
		db, err := store.Open(store.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		out, code := runBin(t, bin, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--smtp-addr", "")
		if code != 1 || !strings.Contains(out, dir+" is in use by another process") || strings.Contains(out, "resource temporarily unavailable") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("AdminWrongToken", func(t *testing.T) {
		s := testserver.Start(t)
		out, code := runBin(t, bin, "admin", "--server", s.URL, "--admin-token", "nope", "accounts", "list")
		if code != 1 || !strings.Contains(out, "401") || !strings.Contains(out, "unauthorized") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	t.Run("MCPStdio", func(t *testing.T) { testMCPStdio(t, bin) })
}

// testMCPStdio runs `mailwire mcp` as an MCP host does (a child speaking
// MCP on stdin and stdout) and calls a tool through it; the tools
// themselves are tested in internal/mcpserver.
func testMCPStdio(t *testing.T, bin string) {
	s := testserver.Start(t)
	acc := s.NewAccount("a")
	s.NewInbox(acc.Key, "desk")
	if out, code := runBin(t, bin, "mcp", "--help"); code != 0 || !strings.Contains(out, "-token key") {
		t.Fatalf("mcp --help: exit %d:\n%s", code, out)
	}
	if out, code := runBin(t, bin, "mcp", "--server", "ftp://x"); code != 1 || !strings.Contains(out, "--server") {
		t.Fatalf("mcp with a bad --server: exit %d:\n%s", code, out)
	}
	cmd := exec.Command(bin, "mcp", "--server", s.URL)
	cmd.Env = append(cleanEnv(), "MAILWIRE_TOKEN="+acc.Key)
	cmd.Stderr = os.Stderr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "binary-test", Version: "1"}, nil).Connect(ctx,
		&mcp.CommandTransport{Command: cmd, TerminateDuration: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_inboxes", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("list_inboxes through the binary: %v %+v", err, res)
	}
	b, _ := json.Marshal(res.StructuredContent)
	if !strings.Contains(string(b), "desk@mail.test") {
		t.Fatalf("list_inboxes through the binary: %s", b)
	}
	start := time.Now()
	if err := cs.Close(); err != nil {
		t.Fatalf("closing stdin did not end mailwire mcp cleanly: %v", err)
	}
	t.Logf("mailwire mcp exited %s after its stdin closed", time.Since(start).Round(time.Millisecond))
}

// cleanEnv is the environment without MAILWIRE_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILWIRE_") {
			env = append(env, kv)
		}
	}
	return env
}

// runBin runs the binary to completion and returns its combined output
// and exit code.
func runBin(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	cmd.Dir = t.TempDir()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("mailwire %v did not exit", args)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("mailwire %v: %v", args, err)
	}
	return string(out), 0
}

// lines collects a stream's lines for polling.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) read(r io.Reader, done chan<- struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		l.mu.Unlock()
	}
}

func (l *lines) find(re *regexp.Regexp) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.all {
		if m := re.FindStringSubmatch(s); m != nil {
			return m
		}
	}
	return nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

func testServeDev(t *testing.T, bin string) {
	dataDir := filepath.Join(t.TempDir(), "data")
	start := func() (*exec.Cmd, *lines, *lines, chan struct{}) {
		t.Helper()
		cmd := exec.Command(bin, "serve", "--dev", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--smtp-addr", "")
		cmd.Env = cleanEnv()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var out, errOut lines
		outDone, errDone := make(chan struct{}), make(chan struct{})
		go out.read(stdout, outDone)
		go errOut.read(stderr, errDone)
		exited := make(chan struct{})
		go func() { <-outDone; <-errDone; close(exited) }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				<-exited
				_ = cmd.Wait()
			}
		})
		return cmd, &out, &errOut, exited
	}
	keyRE := regexp.MustCompile(`API key:\s+(om_[0-9a-f]{48})`)
	inboxRE := regexp.MustCompile(`Inbox:\s+(inb_\S+)\s+<agent@localhost>`)
	addrRE := regexp.MustCompile(`serving HTTP.* addr=(127\.0\.0\.1:\d+)`)

	stopAndWait := func(cmd *exec.Cmd, errOut *lines, exited chan struct{}) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("no exit within 30 s of SIGTERM:\n%s", errOut)
		}
		err := cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); err != nil || code != 0 {
			t.Fatalf("exit code %d (%v) after SIGTERM:\n%s", code, err, errOut)
		}
		if !strings.Contains(errOut.String(), "stopped") {
			t.Errorf("no \"stopped\" log line:\n%s", errOut)
		}
	}

	cmd, out, errOut, exited := start()
	var key, inbox, addr string
	testserver.WaitFor(t, 30*time.Second, "the dev key and the bound address", func() bool {
		k, in, a := out.find(keyRE), out.find(inboxRE), errOut.find(addrRE)
		if k == nil || in == nil || a == nil {
			return false
		}
		key, inbox, addr = k[1], in[1], a[1]
		return true
	})
	base := "http://" + addr
	get := func(path, key string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get("/v1/inboxes/"+inbox, key); st != http.StatusOK || !strings.Contains(body, `"address":"agent@localhost"`) {
		t.Fatalf("GET the dev inbox: %d %s", st, body)
	}
	if st, _ := get("/readyz", ""); st != http.StatusOK {
		t.Fatalf("readyz %d", st)
	}
	// The console's files are in the binary, and the banner points at it.
	if st, body := get("/console/app.js", ""); st != http.StatusOK || !strings.Contains(body, "sessionStorage") {
		t.Fatalf("GET /console/app.js: %d", st)
	}
	if !strings.Contains(out.String(), base+"/console") {
		t.Errorf("the dev banner does not name the console:\n%s", out)
	}
	// The admin API is off without a token.
	if st, body := get("/admin/v1/accounts", "x"); st != http.StatusForbidden {
		t.Fatalf("admin without --admin-token: %d %s", st, body)
	}
	if strings.Contains(errOut.String(), key) {
		t.Errorf("the API key appears in the logs")
	}
	stopAndWait(cmd, errOut, exited)

	// A second start on the same data: the same key is printed again and
	// still works.
	cmd, out, errOut, exited = start()
	testserver.WaitFor(t, 30*time.Second, "the second start", func() bool {
		k, a := out.find(keyRE), errOut.find(addrRE)
		if k == nil || a == nil {
			return false
		}
		if k[1] != key {
			t.Fatalf("second start printed key %s, want %s", k[1], key)
		}
		addr = a[1]
		return true
	})
	base = "http://" + addr
	if st, body := get("/v1/inboxes", key); st != http.StatusOK || !strings.Contains(body, inbox) {
		t.Fatalf("after restart: %d %s", st, body)
	}
	stopAndWait(cmd, errOut, exited)
}
