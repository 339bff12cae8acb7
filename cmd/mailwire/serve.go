package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/confcheck"
	"github.com/mailwire/mailwire/internal/limits"
	"github.com/mailwire/mailwire/store"
)

// serveConfig is `mailwire serve`'s configuration: the node's (app.Config,
// which composes every component's settings, each flag bound to its
// field) and the few settings only the command has.
type serveConfig struct {
	app.Config
	// AdminTokenFile is --admin-token-file: validate reads the token from
	// it into AdminToken.
	AdminTokenFile string
	// Dev is --dev: set up a development account on an empty database.
	Dev bool
	// LogLevel and LogFormat are --log-level and --log-format.
	LogLevel, LogFormat string
	// ShutdownTimeout is --shutdown-timeout.
	ShutdownTimeout time.Duration
}

// defaultServeConfig is CONFIG.md's defaults: app.DefaultConfig and the
// command's own.
func defaultServeConfig() serveConfig {
	return serveConfig{Config: app.DefaultConfig(), LogLevel: "info", LogFormat: "text", ShutdownTimeout: 30 * time.Second}
}

// serveFlags sets *c to its defaults and binds every flag to its field;
// each flag's default is the field's default.
func serveFlags(c *serveConfig) *flag.FlagSet {
	*c = defaultServeConfig()
	fs := flag.NewFlagSet("mailwire serve", flag.ContinueOnError)
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP API, /v1/ws and /metrics listen address (`host:port`; port 0 picks one)")
	fs.StringVar(&c.SMTP.Addr, "smtp-addr", c.SMTP.Addr, "inbound SMTP listen address; empty disables SMTP")
	fs.StringVar(&c.SMTP.TLSCertFile, "smtp-tls-cert", c.SMTP.TLSCertFile, "PEM certificate `file` enabling STARTTLS (with --smtp-tls-key)")
	fs.StringVar(&c.SMTP.TLSKeyFile, "smtp-tls-key", c.SMTP.TLSKeyFile, "PEM private key `file` for STARTTLS")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "the Pebble database `directory`")
	fs.Var(&domainsValue{first: &c.Ingest.MailDomain, rest: &c.Ingest.OtherDomains}, "mail-domain", "the `domain`s of inbox addresses (<mailboxName>@<domain>): repeat the flag or separate with commas; the first is the default")
	fs.StringVar(&c.AdminToken, "admin-token", c.AdminToken, "enables /admin/v1 with this bearer `token`")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", c.AdminTokenFile, "read the admin token from this `file` (kept out of ps and the environment; surrounding white space is dropped)")
	fs.BoolVar(&c.Dev, "dev", c.Dev, "on an empty database create account \"dev\" and inbox \"agent\", and print the API key and a client command")
	fs.DurationVar(&c.WS.PingInterval, "ws-ping-interval", c.WS.PingInterval, "server WebSocket ping period")
	fs.DurationVar(&c.WS.PongTimeout, "ws-pong-timeout", c.WS.PongTimeout, "close a connection whose pong has not come within this")
	fs.IntVar(&c.WS.MaxConnsPerAccount, "ws-max-conns-per-account", c.WS.MaxConnsPerAccount, "open WebSockets per account; more get close 4008")
	fs.IntVar(&c.WS.RateFrames, "ws-rate-frames", c.WS.RateFrames, "client frames allowed per --ws-rate-window; more get close 4029")
	fs.DurationVar(&c.WS.RateWindow, "ws-rate-window", c.WS.RateWindow, "window of --ws-rate-frames")
	fs.Var(sizeValue{&c.WS.MaxFrame}, "ws-max-frame", "largest client frame accepted (`size`, e.g. 64KiB); larger get close 1009")
	fs.Var(sizeValue{&c.WS.MaxPending}, "ws-max-pending", "unsent bytes allowed per connection (`size`; a frame not yet completely written counts whole) before it is closed as a slow consumer (1008)")
	fs.DurationVar(&c.Delivery.AckTimeout, "ws-ack-timeout", c.Delivery.AckTimeout, "for connections that subscribed with \"ack\": true: an event not acked within it counts as a failed attempt and goes to the webhook next; 0 turns the extension off")
	fs.Var(sizeValue{&c.MaxEventBytes}, "max-event-bytes", "largest event frame / webhook body (`size`); longer bodies are cut and the event marked truncated")
	fs.IntVar(&c.WS.ReplayLimit, "replay-limit", c.WS.ReplayLimit, "most events replayed for one last_event_id")
	fs.Var(scheduleValue{&c.Delivery.Schedule}, "retry-schedule", "comma-separated `delays` before each attempt, from the previous one; its length is the number of attempts")
	fs.DurationVar(&c.Delivery.Webhook.Timeout, "webhook-timeout", c.Delivery.Webhook.Timeout, "a webhook attempt that has not answered 2xx by then has failed")
	fs.IntVar(&c.Delivery.WebhookWorkers, "webhook-workers", c.Delivery.WebhookWorkers, "concurrent webhook requests")
	fs.BoolVar(&c.Delivery.Webhook.AllowPrivate, "webhook-allow-private", c.Delivery.Webhook.AllowPrivate, "allow webhook URLs on loopback/private addresses (development and tests)")
	fs.DurationVar(&c.Delivery.Retention, "retention", c.Delivery.Retention, "how long delivered events are kept")
	fs.DurationVar(&c.Delivery.FailedRetention, "failed-retention", c.Delivery.FailedRetention, "how long failed events are kept")
	fs.Var(sizeValue{&c.Ingest.MaxMessageSize}, "max-message-size", "largest inbound message, SMTP and HTTP (`size`)")
	fs.IntVar(&c.Ingest.Limits.MaxParts, "max-mime-parts", c.Ingest.Limits.MaxParts, "most MIME parts parsed per message; past it the rest are left out of the message's attachments (marked attachmentsTruncated / attachments_truncated; the raw message keeps them)")
	fs.Var(sizeValue{&c.IngestMemory}, "ingest-memory", "budget for message bytes in flight across SMTP and HTTP (`size`; default an eighth of the memory available, at least 4 messages); past it 451 4.3.0 / 503 + Retry-After")
	fs.Var(diskValue{&c.MinFreeDisk}, "min-free-disk", "below this free space under --data-dir (`size`, a percentage, or both: the smaller) ingest is refused (452 / 507) while everything else keeps working")
	fs.IntVar(&c.HTTPMaxConnsPerIP, "http-max-conns-per-ip", c.HTTPMaxConnsPerIP, "concurrent HTTP/WebSocket connections from one client address (0: no cap, e.g. behind a proxy)")
	fs.IntVar(&c.SMTP.MaxConnsPerIP, "smtp-max-conns-per-ip", c.SMTP.MaxConnsPerIP, "concurrent SMTP sessions from one client address; more get 421")
	fs.StringVar(&c.NATS.URL, "nats-url", c.NATS.URL, "cluster mode: the NATS JetStream servers (`urls`, comma-separated); without it the node runs alone on Pebble (docs/CLUSTER.md)")
	fs.StringVar(&c.NATS.Node, "node-name", c.NATS.Node, "this node's `name` in the cluster (default: host name + HTTP port)")
	fs.IntVar(&c.NATS.Replicas, "nats-replicas", c.NATS.Replicas, "replicas of every stream and bucket (1 for a single dev NATS server)")
	fs.StringVar(&c.NATS.CredsFile, "nats-creds", c.NATS.CredsFile, "NATS credentials `file` for a secured NATS")
	fs.StringVar(&c.NATS.TLSCA, "nats-tls-ca", c.NATS.TLSCA, "CA certificate `file` to verify a NATS server's TLS certificate")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base `URL` that makes attachment URLs in events and message answers absolute (e.g. https://mail.example.com)")
	fs.BoolVar(&c.AccessLog, "access-log", c.AccessLog, "log one line per HTTP request (method, path, route, status, duration, bytes, client, request id) at info level")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful shutdown may take before connections are dropped")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mailwire serve [flags]\n\nEvery flag can also be set with MAILWIRE_<FLAG> (e.g. MAILWIRE_HTTP_ADDR); the flag wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// validate reports every problem at once: the node's (app.Config.Validate)
// and the command's own settings'. It reads --admin-token-file into
// AdminToken.
func (c *serveConfig) validate() error {
	p := confcheck.List(c.Config.Validate())
	check := func(ok bool, msg string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(msg, args...))
		}
	}
	_, lerr := parseLevel(c.LogLevel)
	check(lerr == nil, "--log-level %q: want debug, info, warn or error", c.LogLevel)
	check(c.LogFormat == "text" || c.LogFormat == "json", "--log-format %q: want text or json", c.LogFormat)
	check(c.ShutdownTimeout > 0, "--shutdown-timeout must be positive")
	if c.AdminTokenFile != "" {
		check(c.AdminToken == "", "--admin-token and --admin-token-file go one at a time")
		b, err := os.ReadFile(c.AdminTokenFile)
		tok := strings.TrimSpace(string(b))
		switch {
		case err != nil:
			check(false, "--admin-token-file: %v", err)
		case tok == "" || strings.ContainsAny(tok, " \t\r\n"):
			check(false, "--admin-token-file %q must hold one token on one line", c.AdminTokenFile)
		case c.AdminToken == "":
			c.AdminToken = tok
		}
	}
	if len(p) > 0 {
		return errors.New("invalid configuration:\n  " + strings.Join(p, "\n  "))
	}
	return nil
}

// nodeName is --node-name, by default the host name and the HTTP port.
func (c *serveConfig) nodeName() string {
	if c.NATS.Node != "" {
		return c.NATS.Node
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(c.HTTPAddr)
	if port == "0" { // picked at start: the process id tells nodes apart
		port = "pid" + strconv.Itoa(os.Getpid())
	}
	return host + "-" + port
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func newLogger(level, format string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func serve(args []string) error {
	var c serveConfig
	fs := serveFlags(&c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q (see mailwire serve --help)", fs.Args())
	}
	if err := c.validate(); err != nil {
		return err
	}
	log := newLogger(c.LogLevel, c.LogFormat)
	slog.SetDefault(log)
	engine.RouteNBIOLogs(log)
	mem := int64(c.IngestMemory)
	if mem <= 0 {
		mem = limits.DefaultIngestMemory(c.Ingest.MaxMessageSize)
	}
	log.Info("Go memory limit", "bytes", limits.SetGoMemoryLimit(mem), "from_env", os.Getenv("GOMEMLIMIT") != "")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once the first signal started the drain, restore the default
	// handling: a second Ctrl-C ends a shutdown that takes too long.
	context.AfterFunc(ctx, stop)
	return run(ctx, &c, log, os.Stdout)
}

// run starts the node, waits for ctx, and stops it. A node that started
// read-only on a full disk is restarted, in the same process, once space
// is back (it then opens the store for writing).
func run(ctx context.Context, c *serveConfig, log *slog.Logger, out *os.File) error {
	for {
		a, err := startNode(c, log, out)
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			stopNode(a, c, log)
			log.Info("stopped")
			return nil
		case <-a.Writable():
			stopNode(a, c, log)
		}
	}
}

func stopNode(a *app.App, c *serveConfig, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Warn("shutdown was not clean", "error", err)
	}
}

func startNode(c *serveConfig, log *slog.Logger, out *os.File) (*app.App, error) {
	cfg := c.Config
	cfg.NATS.Node = c.nodeName()
	cfg.Version, cfg.Logger = version, log
	a, err := app.Start(cfg)
	if err != nil {
		return nil, err
	}
	if c.Dev && !a.ReadOnly() {
		if err := devSetup(c, a.DB, a.Ingest, a.HTTPAddr(), a.SMTPAddr(), out); err != nil {
			log.Error("dev setup failed", "error", err)
		}
	}
	if !c.Dev && c.AdminToken == "" && !a.ReadOnly() {
		if n, err := a.DB.CountAccounts(); err == nil && n == 0 {
			log.Warn("the database has no account and none can be created: start with --admin-token or --admin-token-file " +
				"(then mailwire admin accounts create NAME), or with --dev for a development account")
		}
	}
	log.Info("mailwire ready", "version", version, "http", a.HTTPAddr(), "smtp", a.SMTPAddr(), "data_dir", c.DataDir,
		"read_only", a.ReadOnly())
	return a, nil
}

// devKeyFile keeps the dev account's key so `make run` can print it again
// (development only: --dev).
const devKeyFile = "dev-api-key"

// devSetup creates the dev account and inbox on an empty database and
// prints how to use them.
func devSetup(c *serveConfig, db store.Directory, ing *ingest.Service, httpAddr, smtpAddr string, out *os.File) error {
	keyPath := filepath.Join(c.DataDir, devKeyFile)
	n, err := db.CountAccounts()
	if err != nil {
		return err
	}
	var key, keyID, inboxID string
	if n == 0 {
		acc, k, plain, err := db.CreateAccount("dev")
		if err != nil {
			return err
		}
		in, err := db.CreateInbox(store.Inbox{AccountID: acc.ID, MailboxName: "agent", DisplayName: "Agent"})
		if err != nil {
			return err
		}
		if err := os.WriteFile(keyPath, []byte(plain+"\n"+in.ID+"\n"+k.ID+"\n"), 0o600); err != nil {
			return fmt.Errorf("cannot save the dev key: %w", err)
		}
		key, keyID, inboxID = plain, k.ID, in.ID
	} else {
		b, err := os.ReadFile(keyPath)
		if err != nil {
			fmt.Fprintf(out, "\nThe database in %s already has accounts; --dev only sets up an empty one.\n", c.DataDir)
			return nil
		}
		parts := strings.Fields(string(b))
		if len(parts) < 2 {
			return fmt.Errorf("%s is malformed", keyPath)
		}
		key, inboxID = parts[0], parts[1]
		if len(parts) > 2 {
			keyID = parts[2]
		}
	}
	base := "http://" + httpAddr
	in, err := db.InboxByMailbox("agent")
	addr := "agent@" + c.Ingest.MailDomain
	if err == nil {
		addr = ing.Address(in)
	}
	keyNote := ""
	if keyID != "" {
		keyNote = "  (id " + keyID + ")"
	}
	fmt.Fprintf(out, `
mailwire is running (dev mode).

  API key:   %s%s
  Inbox:     %s  <%s>
  Console:   %s/console  (sign in with the API key)

Listen for events (in another terminal):
  ./bin/mailwire listen --server %s --token %s

Send a message over HTTP:
  curl -s -X POST %s/v1/inboxes/%s/inbound -H 'Authorization: Bearer %s' \
    -H 'Content-Type: application/json' -d '{"from":"you@example.com","subject":"Hello","text":"It works."}'
`, key, keyNote, inboxID, addr, base, base, key, base, inboxID, key)
	if smtpAddr != "" {
		fmt.Fprintf(out, `
Or over SMTP:
  curl -s smtp://%s --mail-from you@example.com --mail-rcpt %s -T - <<< $'Subject: Hello\r\n\r\nIt works.'
`, smtpAddr, addr)
	}
	fmt.Fprintln(out)
	return nil
}
