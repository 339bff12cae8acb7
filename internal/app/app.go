// Package app assembles one mailwire node from its parts (store,
// delivery, ingest, engine, SMTP) in order, and stops it in reverse. The
// mailwire command and the tests use it, so both run the same wiring.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/delivery/webhook"
	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/store"
)

// Config is every setting of a node (CONFIG.md's `serve` flags).
type Config struct {
	HTTPAddr            string
	HTTPIdleTimeout     time.Duration // 0: the engine's default (60s)
	SMTPAddr            string        // "" disables SMTP
	SMTPTLSCert         string
	SMTPTLSKey          string
	DataDir             string
	FS                  vfs.FS // nil: the OS filesystem (tests inject Pebble's)
	MailDomain          string
	AdminToken          string
	WS                  ws.Config
	AckTimeout          time.Duration
	MaxEventBytes       int // 0: store.DefaultMaxEventBytes
	RetrySchedule       []time.Duration
	WebhookTimeout      time.Duration
	WebhookWorkers      int
	WebhookAllowPrivate bool
	Retention           time.Duration
	FailedRetention     time.Duration
	MaxMessageSize      int
	Version             string
	Logger              *slog.Logger
}

// App is a running node.
type App struct {
	cfg      Config
	log      *slog.Logger
	DB       *store.DB
	Delivery *delivery.Dispatcher
	Ingest   *ingest.Service
	Engine   *engine.Server
	SMTP     smtpServer // nil when disabled
}

// Start opens the store and starts every component.
func Start(cfg Config) (*App, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.RetrySchedule) == 0 {
		cfg.RetrySchedule = delivery.DefaultSchedule
	}
	if cfg.FS == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create data directory: %w", err)
		}
	}
	db, err := store.Open(store.Options{Dir: cfg.DataDir, FS: cfg.FS, Logger: log, MaxEventBytes: cfg.MaxEventBytes})
	if err != nil {
		return nil, err
	}
	dset, eset := metrics.NewSet(), metrics.NewSet()
	disp := delivery.New(db, delivery.Config{
		Schedule:        cfg.RetrySchedule,
		AckTimeout:      cfg.AckTimeout,
		WebhookWorkers:  cfg.WebhookWorkers,
		Retention:       cfg.Retention,
		FailedRetention: cfg.FailedRetention,
		Webhook: webhook.Config{
			Timeout:      cfg.WebhookTimeout,
			AllowPrivate: cfg.WebhookAllowPrivate,
			UserAgent:    "mailwire-webhook/" + cfg.Version,
		},
		Metrics: dset,
		Logger:  log,
	})
	ing := ingest.New(db, disp, ingest.Config{
		MailDomain:     cfg.MailDomain,
		MaxMessageSize: cfg.MaxMessageSize,
		FirstDelay:     cfg.RetrySchedule[0],
	})
	srv := engine.New(engine.Config{
		Addr:                 cfg.HTTPAddr,
		IdleTimeout:          cfg.HTTPIdleTimeout,
		AdminToken:           cfg.AdminToken,
		MaxMessageSize:       cfg.MaxMessageSize,
		AllowPrivateWebhooks: cfg.WebhookAllowPrivate,
		WS:                   cfg.WS,
		Metrics:              eset,
		ExtraMetrics:         []*metrics.Set{dset},
		Logger:               log,
		Version:              cfg.Version,
	}, engine.Deps{DB: db, Ingest: ing, Delivery: disp})
	a := &App{cfg: cfg, log: log, DB: db, Delivery: disp, Ingest: ing, Engine: srv}
	disp.SetPusher(srv.Pusher())
	disp.Start()
	if err := srv.Start(); err != nil {
		a.stop(context.Background())
		return nil, err
	}
	if cfg.SMTPAddr != "" {
		s, err := startSMTP(cfg, db, ing, eset, log)
		if err != nil {
			a.stop(context.Background())
			return nil, err
		}
		a.SMTP = s
	}
	return a, nil
}

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

func (a *App) stop(ctx context.Context) error {
	var errs []error
	if a.SMTP != nil {
		errs = append(errs, a.SMTP.Shutdown(ctx))
	}
	errs = append(errs, a.Delivery.Shutdown(ctx))
	errs = append(errs, a.Engine.Shutdown(ctx))
	errs = append(errs, a.DB.Close())
	return errors.Join(errs...)
}
