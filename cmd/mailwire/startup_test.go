package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuf is a log sink for the node's goroutines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startLogged starts a node from flags and returns its log once it is up.
func startLogged(t *testing.T, args ...string) (serveConfig, string) {
	t.Helper()
	clearEnv(t)
	c, err := parseServe(t, append([]string{"--data-dir", filepath.Join(t.TempDir(), "d"), "--http-addr", "127.0.0.1:0", "--smtp-addr", ""}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	a, err := startNode(&c, slog.New(slog.NewTextHandler(&logs, nil)), devnull)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return c, logs.String()
}

const noAccountWarning = "the database has no account and none can be created"

func TestStartWarnsWhenNoAccountCanBeCreated(t *testing.T) {
	if _, logs := startLogged(t); !strings.Contains(logs, noAccountWarning) || !strings.Contains(logs, "level=WARN") {
		t.Errorf("no warning on an empty database without --dev or an admin token:\n%s", logs)
	}
	if _, logs := startLogged(t, "--admin-token", "t0k"); strings.Contains(logs, noAccountWarning) {
		t.Errorf("warning with --admin-token:\n%s", logs)
	}
	if _, logs := startLogged(t, "--dev"); strings.Contains(logs, noAccountWarning) {
		t.Errorf("warning with --dev:\n%s", logs)
	}
}

func TestAdminTokenFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("  s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, logs := startLogged(t, "--admin-token-file", f)
	if c.AdminToken != "s3cret-token" || strings.Contains(logs, noAccountWarning) || strings.Contains(logs, "s3cret") {
		t.Errorf("token %q; log:\n%s", c.AdminToken, logs)
	}

	clearEnv(t)
	empty := filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	for _, args := range [][]string{
		{"--admin-token-file", filepath.Join(t.TempDir(), "missing")},
		{"--admin-token-file", empty},
		{"--admin-token-file", f, "--admin-token", "x"},
	} {
		c, err := parseServe(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--admin-token-file") {
			t.Errorf("%v: validate %v", args, err)
		}
	}
}
