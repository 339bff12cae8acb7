// Package app assembles one mailwire node from its parts (store,
// delivery, ingest, engine, SMTP) in order, and stops it in reverse. The
// mailwire command and the tests use it, so both run the same wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/cluster"
	"github.com/mailwire/mailwire/internal/confcheck"
	"github.com/mailwire/mailwire/internal/limits"
	"github.com/mailwire/mailwire/internal/mcpserver"
	"github.com/mailwire/mailwire/internal/pdftext"
	"github.com/mailwire/mailwire/smtpd"
	"github.com/mailwire/mailwire/store"
	"github.com/mailwire/mailwire/store/jsstore"
)

// Config is every setting of a node (CONFIG.md's `serve` flags): the
// node's own fields and each component's Config. DefaultConfig is
// CONFIG.md's defaults; a zero field still takes the component's default
// (tests build on the zero Config). Each field a flag sets names it, as
// Validate's messages do. The settings several components share have one
// home and Start hands them on: Ingest.MaxMessageSize to the HTTP and SMTP
// edges and the memory budget, Delivery.Webhook.AllowPrivate to the
// engine's webhook URL checks.
type Config struct {
	// HTTPAddr is the HTTP API, /v1/ws and /metrics address (--http-addr).
	HTTPAddr        string
	HTTPIdleTimeout time.Duration // 0: the engine's default (60s)
	HTTPHeadTimeout time.Duration // 0: the engine's default (10s)
	// DataDir is the Pebble database's directory (--data-dir).
	DataDir string
	FS      vfs.FS // nil: the OS filesystem (tests inject Pebble's)
	// AdminToken enables /admin/v1 with this bearer token (--admin-token).
	AdminToken string
	// MaxEventBytes is the largest event frame / webhook body
	// (--max-event-bytes; 0: store.DefaultMaxEventBytes).
	MaxEventBytes int
	// IngestMemory is --ingest-memory (0: limits.DefaultIngestMemory).
	IngestMemory int
	// MinFreeDisk is --min-free-disk (zero: limits.DefaultDiskThreshold).
	MinFreeDisk limits.DiskThreshold
	// HTTPMaxConnsPerIP is --http-max-conns-per-ip (0: no cap; negative:
	// DefaultHTTPMaxConnsPerIP).
	HTTPMaxConnsPerIP int
	// AccessLog is --access-log: one log line per HTTP request.
	AccessLog bool
	// PublicURL is --public-url: the base that makes attachment URLs
	// absolute, in events and in the REST API.
	PublicURL string
	// NATS, when NATS.URL is set, makes the node one of a cluster on NATS
	// JetStream (docs/CLUSTER.md) instead of a node on its own Pebble
	// store.
	NATS NATSConfig

	// WS is the WebSocket settings (--ws-*, --replay-limit; its Metrics
	// and Logger are the engine's).
	WS ws.Config
	// Delivery is the retry schedule, the ack timeout, the webhook client
	// and workers, and retention (--retry-schedule, --ws-ack-timeout,
	// --webhook-*, --retention, --failed-retention; Metrics and Logger
	// are set by Start).
	Delivery delivery.Config
	// Ingest is the mail domains and the message limits
	// (--mail-domain, --max-message-size, --max-mime-parts).
	Ingest ingest.Config
	// SMTP is the SMTP listener (--smtp-addr, "" disables SMTP;
	// --smtp-tls-cert, --smtp-tls-key, --smtp-max-conns-per-ip). Its
	// Domain and MaxMessageSize come from Ingest, its budgets, Metrics and
	// Logger from Start.
	SMTP smtpd.Config

	Version string
	Logger  *slog.Logger
}

// NATSConfig is the cluster flags (--nats-*, --node-name).
type NATSConfig struct {
	// URL is --nats-url: the NATS servers, comma-separated; "" runs the
	// node alone on Pebble.
	URL string
	// Node is --node-name (mailwire serve defaults it).
	Node string
	// Replicas is --nats-replicas.
	Replicas int
	// CredsFile is --nats-creds; TLSCA is --nats-tls-ca.
	CredsFile string
	TLSCA     string
}

// DefaultConfig is CONFIG.md's defaults: the node's own and each
// component's DefaultConfig.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:          "127.0.0.1:8080",
		DataDir:           "./data",
		MaxEventBytes:     store.DefaultMaxEventBytes,
		MinFreeDisk:       limits.DefaultDiskThreshold,
		HTTPMaxConnsPerIP: DefaultHTTPMaxConnsPerIP,
		NATS:              NATSConfig{Replicas: 3},
		WS:                ws.DefaultConfig(),
		Delivery:          delivery.DefaultConfig(),
		Ingest:            ingest.DefaultConfig(),
		SMTP:              smtpd.DefaultConfig(),
	}
}

// Validate reports every problem at once, each naming its flag: the
// node's own settings', then each component's Validate. It checks the
// settings as flags give them (DefaultConfig changed), not the zero
// Config.
func (c Config) Validate() error {
	var p confcheck.Problems
	_, _, err := net.SplitHostPort(c.HTTPAddr)
	p.Check(err == nil, "--http-addr %q is not host:port", c.HTTPAddr)
	p.Check(c.DataDir != "", "--data-dir is required")
	p.Check(c.MaxEventBytes >= 16<<10 && c.MaxEventBytes <= 64<<20, "--max-event-bytes must be between 16KiB and 64MiB")
	p.Check(c.IngestMemory == 0 || int64(c.IngestMemory) >= limits.MessageCost(c.Ingest.MaxMessageSize),
		"--ingest-memory must hold at least one message of --max-message-size (%d bytes)", limits.MessageCost(c.Ingest.MaxMessageSize))
	p.Check(c.HTTPMaxConnsPerIP >= 0, "--http-max-conns-per-ip must not be negative")
	if c.PublicURL != "" {
		pu, err := url.Parse(c.PublicURL)
		p.Check(err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != "" && pu.User == nil && pu.RawQuery == "" && pu.Fragment == "",
			"--public-url %q is not an http(s) base URL (https://mail.example.com)", c.PublicURL)
	}
	p.Add(c.NATS.Validate())
	p.Add(c.SMTP.Validate())
	p.Add(c.Ingest.Validate())
	p.Add(c.WS.Validate())
	p.Add(c.Delivery.Validate())
	return p.Err()
}

// Validate reports every problem of the cluster flags at once; the files
// named must exist.
func (c NATSConfig) Validate() error {
	var p confcheck.Problems
	if c.URL != "" {
		for _, u := range strings.Split(c.URL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			p.Check(err == nil && (pu.Scheme == "nats" || pu.Scheme == "tls" || pu.Scheme == "ws" || pu.Scheme == "wss") && pu.Host != "",
				"--nats-url %q is not a NATS URL (nats://host:port)", u)
		}
	}
	p.Check(c.Replicas >= 1 && c.Replicas <= 5, "--nats-replicas must be between 1 and 5")
	for _, f := range []struct{ flag, file string }{{"--nats-creds", c.CredsFile}, {"--nats-tls-ca", c.TLSCA}} {
		if f.file != "" {
			_, err := os.Stat(f.file)
			p.Check(err == nil, "%s %q: %v", f.flag, f.file, err)
		}
	}
	return p.Err()
}

// App is a running node.
type App struct {
	cfg      Config
	log      *slog.Logger
	DB       store.Store
	Delivery *delivery.Dispatcher
	Ingest   *ingest.Service
	Engine   *engine.Server
	SMTP     smtpServer // nil when disabled
	Limits   engine.Limits
	cluster  *cluster.Pusher // nil on one node

	writable  chan struct{}
	stopWatch chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

// Resource shares (descriptors) not given to client sockets.
const (
	// pebbleFiles is the table files Pebble may keep open: mailwire's
	// database has a few dozen tables; beyond it Pebble's table cache
	// closes and reopens them.
	pebbleFiles = 256
	// otherFiles covers listeners, the WAL and MANIFEST, log and /proc
	// reads, DNS lookups and the like.
	otherFiles = 64
	// DefaultHTTPMaxConnsPerIP is --http-max-conns-per-ip's default.
	DefaultHTTPMaxConnsPerIP = 256
)

// Start opens the store and starts every component.
func Start(cfg Config) (*App, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Delivery.Schedule) == 0 {
		cfg.Delivery.Schedule = delivery.DefaultConfig().Schedule
	}
	if cfg.FS == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create data directory: %w", err)
		}
	}
	dset, eset := metrics.NewSet(), metrics.NewSet()
	lim, err := newLimits(cfg, eset, log)
	if err != nil {
		return nil, err
	}
	db, js, readOnly, err := openStore(cfg, lim, log)
	if err != nil {
		lim.Disk.Stop()
		return nil, err
	}
	dcfg := cfg.Delivery
	if dcfg.Webhook.UserAgent == "" {
		dcfg.Webhook.UserAgent = "mailwire-webhook/" + cfg.Version
	}
	dcfg.Metrics, dcfg.Logger = dset, log
	disp := delivery.New(db, dcfg)
	ing := ingest.New(db, cfg.Ingest)
	// /v1/mcp's tools call this node's own API over loopback with the
	// caller's key (internal/mcpserver); PDF attachments are read in a
	// child process of this binary (internal/pdftext: main calls Child).
	var srv *engine.Server
	pdf, err := pdftext.New("", pdftext.Limits{})
	if err != nil {
		log.Warn("PDF attachments will be described, not read", "error", err)
		pdf = nil
	}
	mcpHandler := mcpserver.Handler(func() string { return loopbackURL(srv.Addr()) },
		mcpserver.Options{Version: cfg.Version, PDF: pdf, MaxWait: mcpMaxWait(cfg.HTTPIdleTimeout)})
	srv = engine.New(engine.Config{
		Addr:                 cfg.HTTPAddr,
		IdleTimeout:          cfg.HTTPIdleTimeout,
		HeadTimeout:          cfg.HTTPHeadTimeout,
		AdminToken:           cfg.AdminToken,
		MaxMessageSize:       cfg.Ingest.MaxMessageSize,
		AllowPrivateWebhooks: cfg.Delivery.Webhook.AllowPrivate,
		WS:                   cfg.WS,
		Metrics:              eset,
		ExtraMetrics:         []*metrics.Set{dset},
		Logger:               log,
		Version:              cfg.Version,
		AccessLog:            cfg.AccessLog,
		PublicURL:            cfg.PublicURL,
	}, engine.Deps{DB: db, Ingest: ing, Delivery: disp, Limits: lim, MCP: mcpHandler})
	a := &App{cfg: cfg, log: log, DB: db, Delivery: disp, Ingest: ing, Engine: srv, Limits: lim, stopWatch: make(chan struct{})}
	if readOnly {
		a.watchDisk()
	}
	var pusher delivery.Pusher = srv.Pusher()
	if js != nil {
		// The node pushes what it reads from the shared log to its own
		// sockets, and attempts learn what every node wrote.
		a.cluster = cluster.New(js, pusher, cluster.Config{FirstDelay: cfg.Delivery.Schedule[0], Metrics: dset, Logger: log})
		if err := a.cluster.Start(); err != nil {
			a.stop(context.Background())
			return nil, fmt.Errorf("cannot join the cluster: %w", err)
		}
		pusher = a.cluster
	}
	disp.SetPusher(pusher)
	disp.Start()
	if err := srv.Start(); err != nil {
		a.stop(context.Background())
		return nil, err
	}
	if cfg.SMTP.Addr != "" {
		s, err := startSMTP(cfg, db, ing, lim, eset, log)
		if err != nil {
			a.stop(context.Background())
			return nil, err
		}
		a.SMTP = s
	}
	return a, nil
}

// ReadOnly reports whether the node runs on a read-only store (it started
// on a full disk).
func (a *App) ReadOnly() bool { return a.DB.ReadOnly() }

// Writable is closed once a read-only node's disk has room again: the
// caller then restarts the node, which opens the store for writing. It is
// nil (never ready) for a node that is not read-only.
func (a *App) Writable() <-chan struct{} { return a.writable }

// watchDisk closes a.writable when the disk is back above the threshold.
func (a *App) watchDisk() {
	ch := make(chan struct{})
	a.writable = ch
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-a.stopWatch:
				return
			case <-t.C:
				if !a.Limits.Disk.Low() {
					a.log.Info("disk space is back: the node restarts to open the store for writing")
					close(ch)
					return
				}
			}
		}
	}()
}

// openStore opens the node's store: the cluster's JetStream store when
// NATS is configured, else Pebble in the data directory (read-only when
// the disk is too full to open it for writing).
func openStore(cfg Config, lim engine.Limits, log *slog.Logger) (store.Store, *jsstore.Store, bool, error) {
	if cfg.NATS.URL != "" {
		js, err := jsstore.Open(jsstore.Options{URL: cfg.NATS.URL, Node: cfg.NATS.Node, Replicas: cfg.NATS.Replicas,
			CredsFile: cfg.NATS.CredsFile, TLSCA: cfg.NATS.TLSCA, MaxEventBytes: cfg.MaxEventBytes, PublicURL: cfg.PublicURL,
			Retention: max(cfg.Delivery.Retention, cfg.Delivery.FailedRetention), Logger: log})
		if err != nil {
			return nil, nil, false, err
		}
		log.Info("cluster store open", "nats", cfg.NATS.URL, "node", cfg.NATS.Node, "replicas", cfg.NATS.Replicas)
		return js, js, false, nil
	}
	readOnly := lim.Disk != nil && tooFullToOpen(cfg.DataDir, lim.Disk)
	if readOnly {
		log.Error("the disk is too full to open the store for writing: serving read-only (ingest refused, no deliveries) until space comes back",
			"dir", cfg.DataDir, "free_bytes", lim.Disk.Free())
	}
	db, err := store.Open(store.Options{Dir: cfg.DataDir, FS: cfg.FS, Logger: log, MaxEventBytes: cfg.MaxEventBytes, PublicURL: cfg.PublicURL,
		MaxOpenFiles: pebbleFiles, ReadOnly: readOnly})
	if err != nil {
		return nil, nil, false, err
	}
	return db, nil, readOnly, nil
}

// tooFullToOpen reports whether the free space under dir is too little
// to open the store for writing: Pebble replays its write-ahead log into
// tables when it opens, and on a full disk it would retry that for ever.
func tooFullToOpen(dir string, d *limits.Disk) bool {
	var wal int64
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".log") {
				if fi, err := e.Info(); err == nil {
					wal += fi.Size()
				}
			}
		}
	}
	return d.Low() && int64(d.Free()) < max(openMinFree, 2*wal)
}

// openMinFree is the least free space the store is opened for writing
// with when the disk is low anyway.
const openMinFree = 64 << 20

// HTTPAddr is the bound HTTP address.
func (a *App) HTTPAddr() string { return a.Engine.Addr() }

// SMTPAddr is the bound SMTP address ("" when disabled).
func (a *App) SMTPAddr() string {
	if a.SMTP == nil {
		return ""
	}
	return a.SMTP.Addr()
}

// Shutdown drains (PROTOCOL.md §8): /readyz, new API calls and upgrades
// answer 503 while the HTTP listener stays open, WebSockets are closed
// with 1001, SMTP stops taking mail, in-flight deliveries finish or
// persist; only then does the HTTP listener close, and the store. It
// returns the errors joined.
func (a *App) Shutdown(ctx context.Context) error {
	a.Engine.Drain()
	return a.stop(ctx)
}

// stop takes the node down in the order that keeps every promise: no new
// attempt starts once the drain began (an attempt made after the
// WebSockets closed would fall back to the webhook for nothing), the
// attempts in flight finish, then the WebSockets close (the outcomes of
// frames they held are still recorded), SMTP finishes its transactions,
// the delivery writer records what is left, and only then the HTTP
// listener and the store close.
func (a *App) stop(ctx context.Context) error {
	a.stopOnce.Do(func() { close(a.stopWatch) })
	a.wg.Wait()
	var errs []error
	errs = append(errs, a.Delivery.Quiesce(ctx))
	a.Engine.CloseWebSockets()
	if a.SMTP != nil {
		errs = append(errs, a.SMTP.Shutdown(ctx))
	}
	_ = a.Delivery.Shutdown(ctx) // its error is Quiesce's, reported above
	errs = append(errs, a.Engine.Shutdown(ctx))
	if a.cluster != nil {
		a.cluster.Stop()
	}
	errs = append(errs, a.DB.Close())
	a.Limits.Disk.Stop()
	return errors.Join(errs...)
}

// newLimits makes the resource budgets shared by HTTP and SMTP.
func newLimits(cfg Config, set *metrics.Set, log *slog.Logger) (engine.Limits, error) {
	var l engine.Limits
	mem := int64(cfg.IngestMemory)
	if mem <= 0 {
		mem = limits.DefaultIngestMemory(cfg.Ingest.MaxMessageSize)
	}
	l.Memory = limits.NewMemory(mem, set, log)
	workers := cfg.Delivery.WebhookWorkers
	if workers <= 0 {
		workers = delivery.DefaultConfig().WebhookWorkers
	}
	fds := limits.NewDescriptors(int64(pebbleFiles+otherFiles+workers), set, log)
	perIP := cfg.HTTPMaxConnsPerIP
	if perIP < 0 {
		perIP = DefaultHTTPMaxConnsPerIP
	}
	l.HTTP = limits.NewGate("http", fds, perIP)
	l.Descriptors = fds
	if cfg.FS == nil && cfg.NATS.URL == "" { // a data directory on the OS's filesystem to watch
		t := cfg.MinFreeDisk
		if t == (limits.DiskThreshold{}) {
			t = limits.DefaultDiskThreshold
		}
		d, err := limits.NewDisk(cfg.DataDir, t, set, log)
		if err != nil {
			return l, err
		}
		d.Start()
		l.Disk = d
	}
	log.Info("resource budgets", "ingest_memory_bytes", mem, "fd_limit", fds.Limit(), "client_sockets", fds.Budget(),
		"http_max_conns_per_ip", perIP, "min_free_disk", cfg.MinFreeDisk.String())
	return l, nil
}

// loopbackURL is the URL this node reaches its own HTTP listener at: the
// bound address, with an unspecified host (":8080", "0.0.0.0", "::")
// replaced by the loopback address.
func loopbackURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// mcpMaxWait is the longest wait_for_email over /v1/mcp: 10 s under the
// HTTP write deadline (--http-idle-timeout, which nbhttp counts from the
// end of the request), so the answer is written before it.
func mcpMaxWait(idle time.Duration) time.Duration {
	if idle <= 0 {
		idle = 60 * time.Second
	}
	return max(idle-10*time.Second, idle/2)
}
