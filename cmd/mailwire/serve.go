package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/limits"
	"github.com/mailwire/mailwire/mailparse"
	"github.com/mailwire/mailwire/store"
)

// serveConfig is every flag of `mailwire serve` (CONFIG.md).
type serveConfig struct {
	HTTPAddr            string
	SMTPAddr            string
	SMTPTLSCert         string
	SMTPTLSKey          string
	DataDir             string
	MailDomains         []string
	AdminToken          string
	AdminTokenFile      string
	Dev                 bool
	WSPingInterval      time.Duration
	WSPongTimeout       time.Duration
	WSMaxConnsPerAcct   int
	WSRateFrames        int
	WSRateWindow        time.Duration
	WSMaxFrame          int
	WSMaxPending        int
	WSAckTimeout        time.Duration
	MaxEventBytes       int
	ReplayLimit         int
	RetrySchedule       []time.Duration
	WebhookTimeout      time.Duration
	WebhookWorkers      int
	WebhookAllowPrivate bool
	Retention           time.Duration
	FailedRetention     time.Duration
	MaxMessageSize      int
	MaxMIMEParts        int
	IngestMemory        int
	MinFreeDisk         string
	HTTPMaxConnsPerIP   int
	SMTPMaxConnsPerIP   int
	NATSURL             string
	NodeName            string
	NATSReplicas        int
	NATSCreds           string
	NATSTLSCA           string
	LogLevel            string
	LogFormat           string
	AccessLog           bool
	PublicURL           string
	ShutdownTimeout     time.Duration
}

func serveFlags(c *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("mailwire serve", flag.ContinueOnError)
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP API, /v1/ws and /metrics listen address (`host:port`; port 0 picks one)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", "127.0.0.1:2525", "inbound SMTP listen address; empty disables SMTP")
	fs.StringVar(&c.SMTPTLSCert, "smtp-tls-cert", "", "PEM certificate `file` enabling STARTTLS (with --smtp-tls-key)")
	fs.StringVar(&c.SMTPTLSKey, "smtp-tls-key", "", "PEM private key `file` for STARTTLS")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "the Pebble database `directory`")
	c.MailDomains = []string{"localhost"}
	fs.Var(&listValue{list: &c.MailDomains}, "mail-domain", "the `domain`s of inbox addresses (<mailboxName>@<domain>): repeat the flag or separate with commas; the first is the default")
	fs.StringVar(&c.AdminToken, "admin-token", "", "enables /admin/v1 with this bearer `token`")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "read the admin token from this `file` (kept out of ps and the environment; surrounding white space is dropped)")
	fs.BoolVar(&c.Dev, "dev", false, "on an empty database create account \"dev\" and inbox \"agent\", and print the API key and a client command")
	fs.DurationVar(&c.WSPingInterval, "ws-ping-interval", 30*time.Second, "server WebSocket ping period")
	fs.DurationVar(&c.WSPongTimeout, "ws-pong-timeout", 10*time.Second, "close a connection whose pong has not come within this")
	fs.IntVar(&c.WSMaxConnsPerAcct, "ws-max-conns-per-account", 10, "open WebSockets per account; more get close 4008")
	fs.IntVar(&c.WSRateFrames, "ws-rate-frames", 30, "client frames allowed per --ws-rate-window; more get close 4029")
	fs.DurationVar(&c.WSRateWindow, "ws-rate-window", 10*time.Second, "window of --ws-rate-frames")
	c.WSMaxFrame, c.WSMaxPending, c.MaxMessageSize = 64<<10, 1<<20, 25<<20
	fs.Var(sizeValue{&c.WSMaxFrame}, "ws-max-frame", "largest client frame accepted (`size`, e.g. 64KiB); larger get close 1009")
	fs.Var(sizeValue{&c.WSMaxPending}, "ws-max-pending", "unsent bytes allowed per connection (`size`) before it is closed as a slow consumer (1008)")
	fs.DurationVar(&c.WSAckTimeout, "ws-ack-timeout", 30*time.Second, "for connections that subscribed with \"ack\": true: an event not acked within it counts as a failed attempt and goes to the webhook next; 0 turns the extension off")
	c.MaxEventBytes = store.DefaultMaxEventBytes
	fs.Var(sizeValue{&c.MaxEventBytes}, "max-event-bytes", "largest event frame / webhook body (`size`); longer bodies are cut and the event marked truncated")
	fs.IntVar(&c.ReplayLimit, "replay-limit", 100, "most events replayed for one last_event_id")
	c.RetrySchedule = append([]time.Duration(nil), delivery.DefaultSchedule...)
	fs.Var(scheduleValue{&c.RetrySchedule}, "retry-schedule", "comma-separated `delays` before each attempt, from the previous one; its length is the number of attempts")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", 15*time.Second, "a webhook attempt that has not answered 2xx by then has failed")
	fs.IntVar(&c.WebhookWorkers, "webhook-workers", 64, "concurrent webhook requests")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", false, "allow webhook URLs on loopback/private addresses (development and tests)")
	fs.DurationVar(&c.Retention, "retention", 168*time.Hour, "how long delivered events are kept")
	fs.DurationVar(&c.FailedRetention, "failed-retention", 720*time.Hour, "how long failed events are kept")
	fs.Var(sizeValue{&c.MaxMessageSize}, "max-message-size", "largest inbound message, SMTP and HTTP (`size`)")
	fs.IntVar(&c.MaxMIMEParts, "max-mime-parts", mailparse.DefaultMaxParts, "most MIME parts parsed per message; past it the rest are left out of the message's attachments (marked attachmentsTruncated / attachments_truncated; the raw message keeps them)")
	fs.Var(sizeValue{&c.IngestMemory}, "ingest-memory", "budget for message bytes in flight across SMTP and HTTP (`size`; default an eighth of the memory available, at least 4 messages); past it 451 4.3.0 / 503 + Retry-After")
	fs.StringVar(&c.MinFreeDisk, "min-free-disk", "1GiB,5%", "below this free space under --data-dir (`size`, a percentage, or both: the smaller) ingest is refused (452 / 507) while everything else keeps working")
	fs.IntVar(&c.HTTPMaxConnsPerIP, "http-max-conns-per-ip", app.DefaultHTTPMaxConnsPerIP, "concurrent HTTP/WebSocket connections from one client address (0: no cap, e.g. behind a proxy)")
	fs.IntVar(&c.SMTPMaxConnsPerIP, "smtp-max-conns-per-ip", 100, "concurrent SMTP sessions from one client address; more get 421")
	fs.StringVar(&c.NATSURL, "nats-url", "", "cluster mode: the NATS JetStream servers (`urls`, comma-separated); without it the node runs alone on Pebble (docs/CLUSTER.md)")
	fs.StringVar(&c.NodeName, "node-name", "", "this node's `name` in the cluster (default: host name + HTTP port)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", 3, "replicas of every stream and bucket (1 for a single dev NATS server)")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "NATS credentials `file` for a secured NATS")
	fs.StringVar(&c.NATSTLSCA, "nats-tls-ca", "", "CA certificate `file` to verify a NATS server's TLS certificate")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.PublicURL, "public-url", "", "base `URL` that makes attachment URLs in events and message answers absolute (e.g. https://mail.example.com)")
	fs.BoolVar(&c.AccessLog, "access-log", false, "log one line per HTTP request (method, path, route, status, duration, bytes, client, request id) at info level")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown may take before connections are dropped")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mailwire serve [flags]\n\nEvery flag can also be set with MAILWIRE_<FLAG> (e.g. MAILWIRE_HTTP_ADDR); the flag wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// validate reports every problem at once.
func (c *serveConfig) validate() error {
	var p []string
	check := func(ok bool, msg string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(msg, args...))
		}
	}
	_, _, err := net.SplitHostPort(c.HTTPAddr)
	check(err == nil, "--http-addr %q is not host:port", c.HTTPAddr)
	if c.SMTPAddr != "" {
		_, _, err := net.SplitHostPort(c.SMTPAddr)
		check(err == nil, "--smtp-addr %q is not host:port", c.SMTPAddr)
	}
	check((c.SMTPTLSCert == "") == (c.SMTPTLSKey == ""), "--smtp-tls-cert and --smtp-tls-key go together")
	check(c.DataDir != "", "--data-dir is required")
	for _, d := range c.MailDomains {
		check(d != "" && !strings.ContainsAny(d, "@ /"), "--mail-domain %q is not a domain", d)
	}
	check(len(c.MailDomains) > 0, "--mail-domain needs at least one domain")
	check(c.WSPingInterval >= 10*time.Millisecond, "--ws-ping-interval must be at least 10ms")
	check(c.WSPongTimeout >= 10*time.Millisecond, "--ws-pong-timeout must be at least 10ms")
	check(c.WSMaxConnsPerAcct >= 1, "--ws-max-conns-per-account must be at least 1")
	check(c.WSRateFrames >= 1, "--ws-rate-frames must be at least 1")
	check(c.WSRateWindow > 0, "--ws-rate-window must be positive")
	check(c.WSMaxFrame >= 256 && c.WSMaxFrame <= 16<<20, "--ws-max-frame must be between 256 bytes and 16MiB")
	check(c.WSMaxPending >= 4<<10, "--ws-max-pending must be at least 4KiB")
	check(c.WSAckTimeout >= 0, "--ws-ack-timeout must not be negative")
	check(c.MaxEventBytes >= 16<<10 && c.MaxEventBytes <= 64<<20, "--max-event-bytes must be between 16KiB and 64MiB")
	check(c.ReplayLimit >= 1 && c.ReplayLimit <= 10000, "--replay-limit must be between 1 and 10000")
	check(len(c.RetrySchedule) >= 1 && len(c.RetrySchedule) <= 100, "--retry-schedule needs 1 to 100 delays")
	check(c.WebhookTimeout >= 100*time.Millisecond, "--webhook-timeout must be at least 100ms")
	check(c.WebhookWorkers >= 1 && c.WebhookWorkers <= 10000, "--webhook-workers must be between 1 and 10000")
	check(c.Retention > 0, "--retention must be positive")
	check(c.FailedRetention > 0, "--failed-retention must be positive")
	check(c.MaxMessageSize >= 1<<10 && c.MaxMessageSize <= 1<<30, "--max-message-size must be between 1KiB and 1GiB")
	check(c.MaxMIMEParts >= 1 && c.MaxMIMEParts <= 100000, "--max-mime-parts must be between 1 and 100000")
	check(c.IngestMemory == 0 || int64(c.IngestMemory) >= limits.MessageCost(c.MaxMessageSize),
		"--ingest-memory must hold at least one message of --max-message-size (%d bytes)", limits.MessageCost(c.MaxMessageSize))
	_, derr := c.diskThreshold()
	check(derr == nil, "--min-free-disk %q: %v", c.MinFreeDisk, derr)
	check(c.HTTPMaxConnsPerIP >= 0, "--http-max-conns-per-ip must not be negative")
	check(c.SMTPMaxConnsPerIP >= 1, "--smtp-max-conns-per-ip must be at least 1")
	if c.NATSURL != "" {
		for _, u := range strings.Split(c.NATSURL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			check(err == nil && (pu.Scheme == "nats" || pu.Scheme == "tls" || pu.Scheme == "ws" || pu.Scheme == "wss") && pu.Host != "",
				"--nats-url %q is not a NATS URL (nats://host:port)", u)
		}
	}
	check(c.NATSReplicas >= 1 && c.NATSReplicas <= 5, "--nats-replicas must be between 1 and 5")
	for flag, f := range map[string]string{"--nats-creds": c.NATSCreds, "--nats-tls-ca": c.NATSTLSCA} {
		if f != "" {
			_, err := os.Stat(f)
			check(err == nil, "%s %q: %v", flag, f, err)
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
	if c.PublicURL != "" {
		pu, err := url.Parse(c.PublicURL)
		check(err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != "" && pu.User == nil && pu.RawQuery == "" && pu.Fragment == "",
			"--public-url %q is not an http(s) base URL (https://mail.example.com)", c.PublicURL)
	}
	if len(p) > 0 {
		return errors.New("invalid configuration:\n  " + strings.Join(p, "\n  "))
	}
	return nil
}

// nodeName is --node-name, by default the host name and the HTTP port.
func (c *serveConfig) nodeName() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(c.HTTPAddr)
	if port == "0" { // picked at start: the process id tells nodes apart
		port = "pid" + strconv.Itoa(os.Getpid())
	}
	return host + "-" + port
}

// diskThreshold parses --min-free-disk: a size, a percentage, or both
// ("1GiB,5%": whichever is smaller on the data directory's filesystem).
func (c *serveConfig) diskThreshold() (limits.DiskThreshold, error) {
	var t limits.DiskThreshold
	for _, part := range strings.Split(c.MinFreeDisk, ",") {
		p, err := limits.ParseDiskThreshold(part, parseSize)
		if err != nil {
			return t, err
		}
		if p.Percent > 0 {
			t.Percent = p.Percent
		} else {
			t.Bytes = p.Bytes
		}
	}
	if t == (limits.DiskThreshold{}) {
		t.Bytes = -1 // "0": no threshold
	}
	return t, nil
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
		mem = limits.DefaultIngestMemory(c.MaxMessageSize)
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
	threshold, _ := c.diskThreshold() // checked by validate
	a, err := app.Start(app.Config{
		HTTPAddr:         c.HTTPAddr,
		SMTPAddr:         c.SMTPAddr,
		SMTPTLSCert:      c.SMTPTLSCert,
		SMTPTLSKey:       c.SMTPTLSKey,
		DataDir:          c.DataDir,
		MailDomain:       c.MailDomains[0],
		OtherMailDomains: c.MailDomains[1:],
		AdminToken:       c.AdminToken,
		WS: ws.Config{
			PingInterval:       c.WSPingInterval,
			PongTimeout:        c.WSPongTimeout,
			MaxConnsPerAccount: c.WSMaxConnsPerAcct,
			RateFrames:         c.WSRateFrames,
			RateWindow:         c.WSRateWindow,
			MaxFrame:           c.WSMaxFrame,
			MaxPending:         c.WSMaxPending,
			ReplayLimit:        c.ReplayLimit,
		},
		AckTimeout:          c.WSAckTimeout,
		MaxEventBytes:       c.MaxEventBytes,
		RetrySchedule:       c.RetrySchedule,
		WebhookTimeout:      c.WebhookTimeout,
		WebhookWorkers:      c.WebhookWorkers,
		WebhookAllowPrivate: c.WebhookAllowPrivate,
		Retention:           c.Retention,
		FailedRetention:     c.FailedRetention,
		MaxMessageSize:      c.MaxMessageSize,
		MaxMIMEParts:        c.MaxMIMEParts,
		IngestMemory:        int64(c.IngestMemory),
		MinFreeDisk:         threshold,
		HTTPMaxConnsPerIP:   c.HTTPMaxConnsPerIP,
		SMTPMaxConnsPerIP:   c.SMTPMaxConnsPerIP,
		NATS: app.NATSConfig{URL: c.NATSURL, Node: c.nodeName(), Replicas: c.NATSReplicas,
			CredsFile: c.NATSCreds, TLSCA: c.NATSTLSCA},
		Version:   version,
		Logger:    log,
		AccessLog: c.AccessLog,
		PublicURL: c.PublicURL,
	})
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
	addr := "agent@" + c.MailDomains[0]
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
