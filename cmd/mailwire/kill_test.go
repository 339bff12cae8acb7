package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/testserver"
)

// TestKill9UnderLoadLosesNothing runs the real binary, loads it with
// concurrent inbound messages, kills it with SIGKILL mid-load, restarts it
// on the same data directory, and checks that every message it had
// acknowledged (202) is stored and then delivered (RELIABILITY.md
// invariants 1 and 6).
func TestKill9UnderLoadLosesNothing(t *testing.T) {
	bin := mailwireBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	// Nobody listens at first: every attempt fails and is rescheduled, so
	// all events are pending when the process dies.
	sched := "0s" + strings.Repeat(",200ms", 40)
	start := func() (*exec.Cmd, string) {
		n := startServe(t, bin, "single", "--data-dir", dataDir, "--retry-schedule", sched)
		return n.cmd, n.base
	}

	cmd, base := start()
	var acc struct{ ID, APIKey string }
	if code := nodeCall(base, "POST", "/admin/v1/accounts", "tok", map[string]string{"name": "k9"}, &acc); code != 201 {
		t.Fatalf("create account: %d", code)
	}
	var inbox struct{ ID string }
	if code := nodeCall(base, "POST", "/v1/inboxes", acc.APIKey, map[string]string{"mailboxName": "agent"}, &inbox); code != 201 {
		t.Fatalf("create inbox: %d", code)
	}

	// Load: writers post until the process dies; only 202s count.
	var (
		mu    sync.Mutex
		acked []string
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for i := 0; !stop.Load(); i++ {
				b, _ := json.Marshal(map[string]string{"from": "load@example.com", "subject": fmt.Sprintf("w%d-%d", w, i), "text": "x"})
				req, _ := http.NewRequest("POST", base+"/v1/inboxes/"+inbox.ID+"/inbound", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+acc.APIKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue // the server is gone: unacknowledged
				}
				var out struct{ EventID string }
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == http.StatusAccepted && out.EventID != "" {
					mu.Lock()
					acked = append(acked, out.EventID)
					mu.Unlock()
				}
			}
		}(w)
	}
	testserver.WaitFor(t, 30*time.Second, "some load", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 300 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	ids := append([]string(nil), acked...)
	mu.Unlock()
	t.Logf("%d messages acknowledged before SIGKILL", len(ids))

	// Restart on the same directory, then give the events somewhere to go.
	cmd, base = start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	got := map[string]bool{}
	var gotMu sync.Mutex
	rc := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMu.Lock()
		got[r.Header.Get("X-Event-Id")] = true
		gotMu.Unlock()
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rc.Serve(ln) }()
	defer rc.Close()
	if code := nodeCall(base, "PUT", "/v1/webhook", acc.APIKey, map[string]string{"url": "http://" + ln.Addr().String() + "/hook"}, nil); code != 200 {
		t.Fatalf("set webhook: %d", code)
	}
	for _, id := range ids {
		var ev struct{ Status string }
		if code := nodeCall(base, "GET", "/v1/events/"+id, acc.APIKey, nil, &ev); code != 200 {
			t.Fatalf("acknowledged event %s lost after SIGKILL (status %d)", id, code)
		}
	}
	testserver.WaitFor(t, 60*time.Second, "every acknowledged event delivered", func() bool {
		gotMu.Lock()
		defer gotMu.Unlock()
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
		return true
	})
}
