package app

import (
	"context"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/engine"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/smtpd"
	"github.com/mailwire/mailwire/store"
)

type smtpServer interface {
	Addr() string
	Shutdown(context.Context) error
}

// startSMTP starts the SMTP listener (smtpd) on cfg.SMTPAddr.
func startSMTP(cfg Config, db store.Directory, ing *ingest.Service, lim engine.Limits, set *metrics.Set, log *slog.Logger) (smtpServer, error) {
	s, err := smtpd.New(smtpd.Config{
		Addr:           cfg.SMTPAddr,
		MaxConnsPerIP:  cfg.SMTPMaxConnsPerIP,
		Memory:         lim.Memory,
		Disk:           lim.Disk,
		Descriptors:    lim.Descriptors,
		Domain:         cfg.MailDomain,
		MaxMessageSize: cfg.MaxMessageSize,
		TLSCertFile:    cfg.SMTPTLSCert,
		TLSKeyFile:     cfg.SMTPTLSKey,
		Metrics:        set,
		Logger:         log,
	}, db, ing)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}
