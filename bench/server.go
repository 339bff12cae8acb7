package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/internal/app"
)

// ServerConfig says which server a run measures.
type ServerConfig struct {
	// Spec is "spawn" (start `mailwire serve` as a child process: its own
	// 20,000 descriptors and its own /proc figures), "inproc" (a node in
	// this process through internal/app: handy, but it shares the
	// descriptor limit, the CPU and every /proc figure with the client),
	// or the base URL of a running server (http://host:port).
	Spec string
	// Bin is the mailwire binary for spawn. Default bin/mailwire.
	Bin string
	// AdminToken is the admin token: required for an external server,
	// generated for the others.
	AdminToken string
	// SMTPAddr is an external server's SMTP address ("" = none).
	SMTPAddr string
	// PID is an external server's process id, for /proc figures; 0: found
	// by the listening port when this user can see it.
	PID int
	// ConnsPerAccount is the per-account WebSocket cap the harness starts
	// its servers with (spawn, inproc). Default 10 (the server's).
	ConnsPerAccount int
	// PingInterval and PongTimeout are the WebSocket heartbeat of started
	// servers; zero keeps the server's defaults (30s, 10s).
	PingInterval, PongTimeout time.Duration
	// Args are extra `mailwire serve` flags (spawn).
	Args []string
	// Log receives the server's log lines (spawn, inproc); nil: discarded.
	Log io.Writer
	// DataParent is where started servers get their temporary data
	// directory. Default os.TempDir(); /dev/shm takes the disk (and its
	// fsync) out of the measurement.
	DataParent string
}

// Server is a server under test.
type Server struct {
	Mode       string `json:"mode"` // spawn, inproc, external
	URL        string `json:"url"`
	SMTPAddr   string `json:"smtp_addr,omitempty"`
	AdminToken string `json:"-"`
	PID        int    `json:"pid,omitempty"`
	// Shared: the server runs in this process (every process figure
	// includes the client).
	Shared bool `json:"shared,omitempty"`
	// DataDir is a started server's data directory (removed at Stop).
	DataDir string `json:"data_dir,omitempty"`
	// ConnsPerAccount is the cap the server was started with (0:
	// unknown, an external server).
	ConnsPerAccount int      `json:"conns_per_account_cap,omitempty"`
	Args            []string `json:"args,omitempty"`

	stop func() error
}

// Stop stops a server the harness started (idempotent; external servers
// are left alone).
func (s *Server) Stop() error {
	if s.stop == nil {
		return nil
	}
	f := s.stop
	s.stop = nil
	return f()
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartServer starts (or attaches to) the server of cfg.Spec.
func StartServer(cfg ServerConfig) (*Server, error) {
	if cfg.ConnsPerAccount <= 0 {
		cfg.ConnsPerAccount = 10
	}
	switch spec := cfg.Spec; {
	case spec == "" || spec == "spawn":
		return spawnServer(cfg)
	case spec == "inproc":
		return inprocServer(cfg)
	case strings.HasPrefix(spec, "http://"):
		if cfg.AdminToken == "" {
			return nil, errors.New("an external server needs --admin-token")
		}
		u, err := url.Parse(spec)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("cannot use --server %q: want http://host:port", spec)
		}
		s := &Server{Mode: "external", URL: strings.TrimSuffix(spec, "/"), AdminToken: cfg.AdminToken, SMTPAddr: cfg.SMTPAddr, PID: cfg.PID}
		if s.PID == 0 {
			if _, port, err := net.SplitHostPort(u.Host); err == nil {
				n, _ := strconv.Atoi(port)
				s.PID = listenerPID(n)
			}
		}
		return s, nil
	default:
		return nil, fmt.Errorf("--server %q: want spawn, inproc or http://host:port", spec)
	}
}

func inprocServer(cfg ServerConfig) (*Server, error) {
	dir, err := os.MkdirTemp(cfg.DataParent, "mailwire-bench-data-")
	if err != nil {
		return nil, fmt.Errorf("cannot create a data directory: %w", err)
	}
	w := cfg.Log
	if w == nil {
		w = io.Discard
	}
	token := cfg.AdminToken
	if token == "" {
		token = randomToken()
	}
	acfg := app.Config{
		HTTPAddr:   "127.0.0.1:0",
		DataDir:    dir,
		AdminToken: token,
		WS: ws.Config{
			MaxConnsPerAccount: cfg.ConnsPerAccount,
			PingInterval:       cfg.PingInterval,
			PongTimeout:        cfg.PongTimeout,
		},
		Version: "bench-inproc",
		Logger:  slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	acfg.SMTP.Addr = "127.0.0.1:0"
	acfg.Ingest.MailDomain = "bench.localhost"
	acfg.Delivery.Webhook.AllowPrivate = true
	a, err := app.Start(acfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cannot start the in-process server: %w", err)
	}
	return &Server{
		Mode: "inproc", URL: "http://" + a.HTTPAddr(), SMTPAddr: a.SMTPAddr(), AdminToken: token,
		PID: os.Getpid(), Shared: true, ConnsPerAccount: cfg.ConnsPerAccount, DataDir: dir,
		stop: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := a.Shutdown(ctx)
			os.RemoveAll(dir)
			return err
		},
	}, nil
}

func spawnServer(cfg ServerConfig) (*Server, error) {
	bin := cfg.Bin
	if bin == "" {
		bin = filepath.Join("bin", "mailwire")
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("cannot spawn the server: %w (build it with `make build`, or pass --server-bin)", err)
	}
	dir, err := os.MkdirTemp(cfg.DataParent, "mailwire-bench-data-")
	if err != nil {
		return nil, fmt.Errorf("cannot create a data directory: %w", err)
	}
	token := cfg.AdminToken
	if token == "" {
		token = randomToken()
	}
	args := []string{"serve",
		"--http-addr", "127.0.0.1:0", "--smtp-addr", "127.0.0.1:0",
		"--data-dir", dir, "--mail-domain", "bench.localhost",
		"--admin-token", token, "--webhook-allow-private",
		"--ws-max-conns-per-account", strconv.Itoa(cfg.ConnsPerAccount),
		"--log-format", "json",
	}
	if cfg.PingInterval > 0 {
		args = append(args, "--ws-ping-interval", cfg.PingInterval.String())
	}
	if cfg.PongTimeout > 0 {
		args = append(args, "--ws-pong-timeout", cfg.PongTimeout.String())
	}
	args = append(args, cfg.Args...)
	cmd := exec.Command(bin, args...)
	// The server must not inherit our environment's MAILWIRE_* settings
	// silently: flags win over them anyway, and the run records its flags.
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cannot start %s: %w", bin, err)
	}
	type ready struct{ http, smtp string }
	readyCh := make(chan ready, 1)
	var logWG sync.WaitGroup
	logWG.Add(1)
	go func() {
		defer logWG.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if cfg.Log != nil {
				cfg.Log.Write(append(line, '\n'))
			}
			var l struct {
				Msg  string `json:"msg"`
				HTTP string `json:"http"`
				SMTP string `json:"smtp"`
			}
			if json.Unmarshal(line, &l) == nil && l.Msg == "mailwire ready" {
				select {
				case readyCh <- ready{l.HTTP, l.SMTP}:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-exited:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			err = fmt.Errorf("the server did not stop within 60s: %w", <-exited)
		}
		logWG.Wait()
		os.RemoveAll(dir)
		return err
	}
	select {
	case r := <-readyCh:
		return &Server{
			Mode: "spawn", URL: "http://" + r.http, SMTPAddr: r.smtp, AdminToken: token,
			PID: cmd.Process.Pid, ConnsPerAccount: cfg.ConnsPerAccount, DataDir: dir, Args: append([]string{bin}, redact(args, token)...),
			stop: stop,
		}, nil
	case err := <-exited:
		exited <- err
		_ = stop()
		return nil, fmt.Errorf("the server exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		_ = stop()
		return nil, errors.New("the server was not ready within 30s")
	}
}

func redact(args []string, secret string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if out[i] == secret {
			out[i] = "<token>"
		}
	}
	return out
}

// listenerPID finds the process listening on a loopback TCP port through
// /proc (0 when not found or not visible).
func listenerPID(port int) int {
	inode := ""
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, p, ok := strings.Cut(fl[1], ":")
			if n, err := strconv.ParseInt(p, 16, 32); ok && err == nil && int(n) == port {
				inode = fl[9]
			}
		}
	}
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	procs, _ := os.ReadDir("/proc")
	for _, pd := range procs {
		pid, err := strconv.Atoi(pd.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir("/proc/" + pd.Name() + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink("/proc/" + pd.Name() + "/fd/" + fd.Name()); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}
